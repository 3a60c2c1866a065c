"""nova-compute with devcloud's fake driver.

Nova imports `compute_driver` only as `nova.virt.<name>`, so our driver module is registered
under `nova.virt.devcloud_fake` before nova-compute's own main() runs.
"""

# ruff: noqa: I001 - order matters: nova.cmd applies its monkey patching when imported
import sys

from nova.cmd import compute
import nova.virt

from devcloud_ext import nova_fake

sys.modules["nova.virt.devcloud_fake"] = nova_fake
nova.virt.devcloud_fake = nova_fake  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.argv[0] = "nova-compute"
    sys.exit(compute.main())
