"""The GUI's static files, shipped inside the package (``kuma/gui/static``) and served from
memory: no build step, nothing read from disk per request.

Every answer carries an ETag (a browser revalidates with ``If-None-Match`` and gets a 304) and
headers that keep the pages to themselves: a Content-Security-Policy that allows only this
origin's scripts, styles and server-sent events (no inline script, no third party), no framing,
no MIME sniffing, no referrer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str

    def response(self, request: web.Request) -> web.Response:
        headers = {**SECURITY_HEADERS, "ETag": self.etag, "Cache-Control": "no-cache"}
        if self.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers={**headers, "Content-Type": self.content_type})


def load_assets() -> dict[str, Asset]:
    """Every file of ``kuma/gui/static`` by name."""
    found: dict[str, Asset] = {}
    for entry in resources.files("kuma.gui").joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if not entry.is_file() or suffix not in _TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'
        found[entry.name] = Asset(body, _TYPES[suffix], etag)
    if "index.html" not in found:
        raise RuntimeError("the GUI's files are missing from the installed package (index.html)")
    return found
