"""gunicorn entry point for cinder-api (same sys.argv problem as wsgi_neutron)."""

import os
import sys

sys.argv = ["cinder-api", "--config-file", os.environ["DEVCLOUD_CONF"]]

from cinder.wsgi.wsgi import initialize_application  # noqa: E402

application = initialize_application()
