"""gunicorn entry point for nova-api (oslo.config would parse gunicorn's sys.argv)."""

import sys

sys.argv = ["nova-api"]

from nova.wsgi.osapi_compute import application  # noqa: E402

__all__ = ["application"]
