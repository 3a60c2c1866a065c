"""nova-compute with devcloud's fake driver.

Nova imports `compute_driver` only as `nova.virt.<name>`, so our driver module is registered
under `nova.virt.devcloud_fake` before nova-compute's own main() runs.
"""

import sys

from nova.cmd import compute  # first: nova.cmd applies its monkey patching on import

from devcloud_ext import nova_fake  # noqa: E402
import nova.virt  # noqa: E402

sys.modules["nova.virt.devcloud_fake"] = nova_fake
nova.virt.devcloud_fake = nova_fake  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.argv[0] = "nova-compute"
    sys.exit(compute.main())
