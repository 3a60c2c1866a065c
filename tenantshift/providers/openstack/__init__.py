"""openstack."""
