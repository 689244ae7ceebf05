"""The gateway: /w/{owner}/{name}/... proxied, authenticated, to the workspace's engine."""

from devyard.gateway.app import Gateway, GatewayMiddleware

__all__ = ["Gateway", "GatewayMiddleware"]
