"""The code-server engine: installing it into devyard's cache and building its command line."""
