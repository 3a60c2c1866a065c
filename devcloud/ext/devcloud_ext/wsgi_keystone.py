"""gunicorn entry point for Keystone.

Keystone's oslo.config parses sys.argv when the app is built (config files come from
OS_KEYSTONE_CONFIG_DIR); gunicorn's own arguments would be rejected, so clear them.
"""

import sys

sys.argv = ["keystone-wsgi"]

from keystone.server.wsgi import initialize_public_application  # noqa: E402

application = initialize_public_application()
