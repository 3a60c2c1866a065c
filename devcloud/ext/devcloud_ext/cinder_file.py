"""A Cinder volume driver whose volumes are sparse files holding real bytes.

LVM needs device-mapper, which this machine kind lacks, and the fake driver shipped with
Cinder stores nothing. Here each volume is `<state>/volumes/volume-<id>` (a sparse file of the
volume's size) and each snapshot `<state>/volumes/snapshot-<id>`. Every data path copies
extents only (SEEK_DATA/SEEK_HOLE), so holes stay holes.

Attachments hand Nova a `local` connection whose `device_path` is the file; devcloud's Nova
driver turns that into the by-id symlink a conversion host sees.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from cinder.volume import driver
from oslo_log import log as logging

from . import paths, sparse

LOG = logging.getLogger(__name__)
GiB = 1024**3


class FileVolumeDriver(driver.VolumeDriver):
    VERSION = "1.0.0"
    CI_WIKI_NAME = "devcloud"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dir = paths.volumes_dir()

    # --- set-up and stats -------------------------------------------------------------
    def do_setup(self, context: Any) -> None:
        os.makedirs(self._dir, exist_ok=True)

    def check_for_setup_error(self) -> None:
        if not os.access(self._dir, os.W_OK):
            raise RuntimeError(f"volume directory {self._dir} is not writable")

    def _update_volume_stats(self) -> None:
        st = os.statvfs(self._dir)
        free_gb = st.f_bavail * st.f_frsize // GiB
        self._stats = {
            "volume_backend_name": self.configuration.safe_get("volume_backend_name") or "file",
            "vendor_name": "devcloud",
            "driver_version": self.VERSION,
            "storage_protocol": "local",
            # Sparse files: advertise thin provisioning so the scheduler does not refuse
            # volumes bigger than the free disk space.
            "total_capacity_gb": max(free_gb * 10, 1000),
            "free_capacity_gb": max(free_gb * 10, 1000),
            "reserved_percentage": 0,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "max_over_subscription_ratio": 20.0,
            "multiattach": False,
            "QoS_support": False,
        }

    # --- paths ------------------------------------------------------------------------
    def _vol(self, volume: Any) -> str:
        return os.path.join(self._dir, f"volume-{volume.id}")

    def _snap(self, snapshot: Any) -> str:
        return os.path.join(self._dir, f"snapshot-{snapshot.id}")

    # --- volumes and snapshots --------------------------------------------------------
    def create_volume(self, volume: Any) -> dict[str, Any]:
        with open(self._vol(volume), "wb") as f:
            f.truncate(volume.size * GiB)
        return {"provider_location": self._vol(volume)}

    def delete_volume(self, volume: Any) -> None:
        # Cinder requires that deleted data cannot leak into a new volume: the file goes.
        _unlink(self._vol(volume))

    def extend_volume(self, volume: Any, new_size: int) -> None:
        os.truncate(self._vol(volume), new_size * GiB)

    def create_snapshot(self, snapshot: Any) -> dict[str, Any]:
        sparse.copy_sparse(self._vol(snapshot.volume), self._snap(snapshot))
        return {"provider_location": self._snap(snapshot)}

    def delete_snapshot(self, snapshot: Any) -> None:
        _unlink(self._snap(snapshot))

    def create_volume_from_snapshot(self, volume: Any, snapshot: Any) -> dict[str, Any]:
        sparse.copy_sparse(self._snap(snapshot), self._vol(volume), volume.size * GiB)
        return {"provider_location": self._vol(volume)}

    def create_cloned_volume(self, volume: Any, src_vref: Any) -> dict[str, Any]:
        sparse.copy_sparse(self._vol(src_vref), self._vol(volume), volume.size * GiB)
        return {"provider_location": self._vol(volume)}

    def revert_to_snapshot(self, context: Any, volume: Any, snapshot: Any) -> None:
        sparse.copy_sparse(self._snap(snapshot), self._vol(volume), volume.size * GiB)

    # --- images -----------------------------------------------------------------------
    def clone_image(self, context: Any, volume: Any, image_location: Any, image_meta: dict,
                    image_service: Any) -> tuple[dict[str, Any], bool]:
        """Volume from image: stream the image straight into the volume file.

        Doing it here (reporting `cloned`) bypasses Cinder's generic download path, which
        runs `qemu-img` (not installed) through rootwrap/sudo.
        """
        self.copy_image_to_volume(context, volume, image_service, image_meta["id"])
        return {"provider_location": self._vol(volume)}, True

    def copy_image_to_volume(self, context: Any, volume: Any, image_service: Any,
                             image_id: str, disable_sparse: bool = False) -> None:
        chunks = image_service.download(context, image_id)
        written = sparse.write_stream_sparse(chunks, self._vol(volume), volume.size * GiB)
        if written > volume.size * GiB:
            raise ValueError(f"image {image_id} ({written} B) exceeds volume size")
        LOG.info("copied image %s (%d bytes) into volume %s", image_id, written, volume.id)

    def copy_volume_to_image(self, context: Any, volume: Any, image_service: Any,
                             image_meta: dict) -> None:
        """Upload the full logical content (raw); the API already set disk/container format."""
        from eventlet import tpool  # cinder-volume runs under eventlet: keep reads off-hub

        with open(self._vol(volume), "rb") as f:
            image_service.update(context, image_meta["id"], {}, tpool.Proxy(f),
                                 store_id=image_meta.get("store_id"))

    # --- exports and attachments ------------------------------------------------------
    def create_export(self, context: Any, volume: Any, connector: Any) -> None:
        return None

    def ensure_export(self, context: Any, volume: Any) -> None:
        return None

    def remove_export(self, context: Any, volume: Any) -> None:
        return None

    def initialize_connection(self, volume: Any, connector: Any) -> dict[str, Any]:
        return {
            "driver_volume_type": "local",
            "data": {"device_path": self._vol(volume), "volume_id": volume.id},
        }

    def terminate_connection(self, volume: Any, connector: Any, **kwargs: Any) -> None:
        return None


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
