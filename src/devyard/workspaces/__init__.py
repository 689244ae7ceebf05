"""Workspace lifecycle: the state machine between the API, the gateway and a backend."""
