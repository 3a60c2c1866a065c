"""The agent, packed as a zip application for the conversion hosts."""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent / "agent"
#: Package name inside the zip: short, and not ``tenantshift`` (the host has no tenantshift).
PACKAGE = "tsagent"
MAIN = f"import sys\nfrom {PACKAGE}.cli import main\nsys.exit(main())\n"


@functools.cache
def agent_zip() -> bytes:
    """The zip bytes (deterministic: fixed timestamps, sorted names)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(AGENT_DIR.glob("*.py")):
            info = zipfile.ZipInfo(f"{PACKAGE}/{path.name}", date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo("__main__.py", (2020, 1, 1, 0, 0, 0)), MAIN)
    return buf.getvalue()
