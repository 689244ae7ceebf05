"""The CLI's way to the REST API: DEVYARD_URL and DEVYARD_TOKEN, JSON errors turned into DevyardError."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from devyard.errors import ApiError, DevyardError, Unauthorized
from devyard.paths import DEFAULT_DATA_DIR, DEFAULT_PORT, MANAGER_FILE


def _local_manager() -> dict[str, Any]:
    root = Path(os.environ.get("DEVYARD_DATA_DIR") or DEFAULT_DATA_DIR)
    try:
        record: dict[str, Any] = json.loads((root / "run" / MANAGER_FILE).read_text())
        return record
    except (OSError, ValueError):
        return {}


def manager_url() -> str:
    """DEVYARD_URL, else the URL a local `devyard up` recorded, else the default address."""
    if os.environ.get("DEVYARD_URL"):
        return os.environ["DEVYARD_URL"].rstrip("/")
    return str(_local_manager().get("url") or f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")


def ca_bundle() -> str | bool:
    """What to verify the manager's certificate with: DEVYARD_CA_CERT, a local self-signed one, or the system's."""
    if os.environ.get("DEVYARD_CA_CERT"):
        return os.environ["DEVYARD_CA_CERT"]
    ca = None if os.environ.get("DEVYARD_URL") else _local_manager().get("ca")
    return str(ca) if ca else True


def token_from_env() -> str | None:
    """DEVYARD_TOKEN, else the first line of the file DEVYARD_TOKEN_FILE names (as `config-ssh --token-file` writes it into ssh's commands)."""
    if os.environ.get("DEVYARD_TOKEN"):
        return os.environ["DEVYARD_TOKEN"]
    path = os.environ.get("DEVYARD_TOKEN_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip().splitlines()[0] or None
    except (OSError, IndexError) as exc:
        raise Unauthorized(f"cannot read the API token from DEVYARD_TOKEN_FILE {path}: {exc}", code="no_token") from exc


class Api:
    """A small synchronous client of /api/v1."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url or manager_url()
        self.token = token if token is not None else token_from_env()
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        verify = ca_bundle()
        self.http = httpx.Client(
            base_url=self.url + "/api/v1",
            headers=headers,
            timeout=timeout,
            verify=verify if isinstance(verify, bool) else ssl.create_default_context(cafile=verify),
        )

    def require_token(self) -> None:
        """Refuse early, with the fix, when no token is set."""
        if not self.token:
            raise Unauthorized(
                "no API token: set DEVYARD_TOKEN (create one with `devyard token create`)", code="no_token"
            )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API; the decoded JSON answer, or ApiError."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DevyardError(
                f"cannot reach the manager at {self.url} ({exc}); is `devyard up` running?", code="manager_unreachable"
            ) from exc
        return self.decode(response)

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        """JSON body of a success (the text of any other content); ApiError built from the error body otherwise."""
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                raise ApiError(response.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(
                    response.status_code, "http_error", f"HTTP {response.status_code}: {response.text[:200]}"
                ) from None
        if response.status_code == 204 or not response.content:
            return None
        if not response.headers.get("content-type", "").startswith("application/json"):
            return response.text  # a download (CSV)
        return response.json()
