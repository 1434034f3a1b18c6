"""A small synchronous client of kuma-cp's REST API (urllib: a CLI makes a handful of calls
and needs no event loop)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from .errors import CliError, from_response

DEFAULT_TIMEOUT = 30.0


class Client:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        ca_cert_file: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._tls: ssl.SSLContext | None = None
        if base_url.startswith("https://"):
            try:
                self._tls = ssl.create_default_context(cafile=ca_cert_file)
            except (OSError, ssl.SSLError) as exc:
                raise CliError(f"--ca-cert-file {ca_cert_file}: {exc}") from None

    def url(self, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
        url = self.base_url + path
        return f"{url}?{urllib.parse.urlencode(list(query))}" if query else url

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; the status and body of a 2xx answer. Raises ApiCallError for an
        error answer and CliError when the server cannot be reached."""
        return self._send(method, self.url(path, query), body)

    def get_json(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Any:
        return json.loads(self.call("GET", path, query=query)[1])

    def get_url_json(self, url: str) -> Any:
        """GET a full URL the server handed out (a list's ``next``)."""
        return json.loads(self._send("GET", url, None)[1])

    def _send(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout, context=self._tls
            ) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise from_response(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(
                f"could not connect to the Control Plane API Server at {self.base_url}: {reason}"
            ) from None


def item_path(plural: str, name: str, mesh: str | None = None) -> str:
    """``/meshes/{mesh}/dataplanes/{name}`` or ``/zoneingresses/{name}``, names quoted."""
    return collection_path(plural, mesh) + "/" + urllib.parse.quote(name, safe="")


def collection_path(plural: str, mesh: str | None = None) -> str:
    if mesh is None:
        return f"/{plural}"
    return f"/meshes/{urllib.parse.quote(mesh, safe='')}/{plural}"


def offset_of(next_url: str | None) -> str | None:
    """The ``offset`` parameter of a list's ``next`` URL."""
    if not next_url:
        return None
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(next_url).query).get("offset")
    return values[0] if values else None
