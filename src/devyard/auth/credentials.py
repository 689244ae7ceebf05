"""Reading credentials off a request: the API token of an `Authorization: Bearer` header.

Here, under auth/, because the API's dependencies, the pages, the event stream and the gateway
all read it the same way, and the gateway must not depend on the API's routers to do so.
"""

from __future__ import annotations


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None
