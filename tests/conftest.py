"""Fixtures for every test directory: the memory-cloud command line (``tests/cli_memory.py``),
used by test_cli.py, test_cli_errors.py and the graph and report commands in tests/views."""

from tests.cli_memory import clouds, manifest

__all__ = ["clouds", "manifest"]
