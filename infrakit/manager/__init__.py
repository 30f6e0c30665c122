"""The manager: commits, leadership and the store of committed specs."""
