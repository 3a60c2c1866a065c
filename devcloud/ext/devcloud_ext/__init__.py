"""devcloud's code that runs inside the OpenStack venv (plugins and bootstrap scripts)."""
