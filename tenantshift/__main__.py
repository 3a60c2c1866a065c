"""``python -m tenantshift``: the same as the ``tenantshift`` command."""

from tenantshift.cli import app

app(prog_name="tenantshift")
