"""gunicorn entry point for neutron-api.

Neutron parses sys.argv with oslo.config when the app is built; under gunicorn sys.argv holds
gunicorn's own options, which Neutron rejects. Point it at our config file instead.
"""

import os
import sys

sys.argv = ["neutron-api", "--config-file", os.environ["DEVCLOUD_CONF"]]

from neutron.wsgi.api import application  # noqa: E402

__all__ = ["application"]
