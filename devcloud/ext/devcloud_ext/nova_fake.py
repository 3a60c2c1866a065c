"""Nova's fake compute driver, made to keep real bytes and to survive restarts.

Upstream `fake.FakeDriverWithoutFakeNodes` (plain FakeDriver refuses to restart on existing
data) keeps servers in memory only and uploads nothing on snapshot. This subclass adds:

- a root-disk file per image-booted server (`<state>/hosts/<id>/root.disk`, copied from its
  image at boot) that `createImage` uploads, so a server snapshot is an active image with bytes;
- a by-id directory per server (`<state>/hosts/<id>/by-id/virtio-<volume id[:20]>` → the
  volume's file, or with DEVCLOUD_LOOP_DEVICES=1 a loop device over it, see `loopdev`),
  maintained on boot, attach, detach and delete: it plays /dev/disk/by-id;
- for a server booted from the conversion image, a real sshd and a cloud-init-like console
  log with its host key (`guest_ssh`);
- the instance table persisted to `<state>/nova/fake-instances.json`, so restarting
  nova-compute does not turn every server into a ghost.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from typing import Any

from nova import exception
from nova.compute import task_states
from nova.image import glance
from nova.virt import driver as virt_driver
from nova.virt import fake
from oslo_log import log as logging

from . import guest_ssh, loopdev, paths

LOG = logging.getLogger(__name__)


class DevcloudFakeDriver(fake.FakeDriverWithoutFakeNodes):
    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self._image_api = glance.API()
        self._db = os.path.join(paths.state_dir(), "nova", "fake-instances.json")
        self._lock = threading.Lock()

    # --- persistence ------------------------------------------------------------------
    def init_host(self, host: str) -> None:
        super().init_host(host)
        try:
            with open(self._db) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            saved = {}
        for uuid, rec in saved.items():
            self.instances[uuid] = fake.FakeInstance(rec["name"], rec["state"], uuid)
            guest_ssh.start(uuid)  # a conversion server's sshd died with nova-compute
        LOG.info("devcloud: restored %d fake instances", len(saved))

    def _save(self) -> None:
        with self._lock:
            data = {u: {"name": i.name, "state": i.state} for u, i in self.instances.items()}
            tmp = self._db + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self._db)

    # --- lifecycle --------------------------------------------------------------------
    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: Any, allocations: Any, network_info: Any = None,
              block_device_info: Any = None, power_on: bool = True,
              accel_info: Any = None) -> None:
        os.makedirs(paths.by_id_dir(instance.uuid), exist_ok=True)
        mappings = virt_driver.block_device_info_get_mapping(block_device_info)
        boots_from_volume = any(bdm.get("boot_index") == 0 for bdm in mappings)
        if instance.image_ref and not boots_from_volume:
            # What a hypervisor would do: a root disk made from the image.
            root = os.path.join(paths.host_dir(instance.uuid), "root.disk")
            self._image_api.download(context, instance.image_ref, dest_path=root)
        for bdm in mappings:
            self._link(instance, bdm.get("connection_info"))
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, network_info, block_device_info, power_on, accel_info)
        if guest_ssh.is_conversion(instance):
            guest_ssh.prepare(instance)
            guest_ssh.start(instance.uuid)
        self._save()

    def destroy(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        guest_ssh.stop(instance.uuid)
        super().destroy(context, instance, network_info, block_device_info, destroy_disks,
                        destroy_secrets)
        by_id = paths.by_id_dir(instance.uuid)
        for name in os.listdir(by_id) if os.path.isdir(by_id) else []:
            loopdev.release_link(os.path.join(by_id, name), paths.state_dir())
        if destroy_disks:
            shutil.rmtree(paths.host_dir(instance.uuid), ignore_errors=True)
        self._save()

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        super().power_off(instance, timeout, retry_interval)
        self._save()

    def power_on(self, context: Any, instance: Any, network_info: Any,
                 block_device_info: Any = None, accel_info: Any = None,
                 share_info: Any = None) -> None:
        super().power_on(context, instance, network_info, block_device_info, accel_info,
                         share_info)
        self._save()

    def get_console_output(self, context: Any, instance: Any) -> str:
        return guest_ssh.console(instance.uuid) or super().get_console_output(context, instance)

    # --- snapshots --------------------------------------------------------------------
    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Any) -> None:
        if instance.uuid not in self.instances:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        root = os.path.join(paths.host_dir(instance.uuid), "root.disk")
        update_task_state(task_state=task_states.IMAGE_UPLOADING,
                          expected_state=task_states.IMAGE_PENDING_UPLOAD)
        metadata = {"disk_format": "raw", "container_format": "bare"}
        if not os.path.exists(root):  # e.g. booted before devcloud kept root disks
            LOG.warning("no root disk for %s; uploading an empty image", instance.uuid)
            with open(root, "wb"):
                pass
        with open(root, "rb") as f:
            self._image_api.update(context, image_id, metadata, f, purge_props=False)

    # --- volumes ----------------------------------------------------------------------
    def attach_volume(self, context: Any, connection_info: dict, instance: Any,
                      mountpoint: str, disk_bus: Any = None, device_type: Any = None,
                      encryption: Any = None) -> None:
        super().attach_volume(context, connection_info, instance, mountpoint, disk_bus,
                              device_type, encryption)
        self._link(instance, connection_info)

    def detach_volume(self, context: Any, connection_info: dict, instance: Any,
                      mountpoint: str, encryption: Any = None) -> None:
        super().detach_volume(context, connection_info, instance, mountpoint, encryption)
        volume_id = _volume_id(connection_info)
        if volume_id:
            link = os.path.join(paths.by_id_dir(instance.uuid), paths.by_id_name(volume_id))
            loopdev.release_link(link, paths.state_dir())
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)

    def _link(self, instance: Any, connection_info: dict | None) -> None:
        data = (connection_info or {}).get("data") or {}
        volume_id = _volume_id(connection_info)
        target = data.get("device_path")
        if not (volume_id and target):
            LOG.warning("devcloud: no device_path in connection_info %s", connection_info)
            return
        d = paths.by_id_dir(instance.uuid)
        os.makedirs(d, exist_ok=True)
        link = os.path.join(d, paths.by_id_name(volume_id))
        if loopdev.enabled():  # a real block device, as a cloud's attached volume is
            loopdev.release_link(link, paths.state_dir())
            target = loopdev.attach(target)
        tmp = link + ".tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)


def _volume_id(connection_info: dict | None) -> str | None:
    if not connection_info:
        return None
    data = connection_info.get("data") or {}
    return connection_info.get("serial") or data.get("volume_id")

