"""The conversion-host agent: standard library only, Python >= 3.8.

It is shipped to each conversion host over SSH as a zip application (see
``tenantshift.transfer.bundle``) and run there with the host's own interpreter, because a
conversion host may have nothing but Python's standard library. Nothing in this package may
import ``tenantshift`` or any third-party module; imports between its modules are relative so
that the same files work as ``tenantshift.transfer.agent`` (tests) and as ``tsagent`` (inside
the zip).
"""

PROTOCOL_VERSION = 2
