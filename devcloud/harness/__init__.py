"""devcloud harness: standard-library-only orchestration of a local OpenStack."""
