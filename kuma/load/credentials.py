"""What the simulated sidecars prove themselves with, as real ones do: kuma-cp's certificate
to verify (``<workDir>/kuma-cp.crt``) and one dataplane token per proxy, bound to its name.

The tokens are signed here with the mesh's signing key, read once from kuma-cp's REST API
(the harness is on loopback: an admin), which is what ``kumactl generate dataplane-token
--signing-key-path`` does offline; kuma-cp then verifies each one on its first stream like any
other. Signing is done before the sidecars start, so it is not part of any measured time.
"""

from __future__ import annotations

import base64
import time
import urllib.request
from pathlib import Path

import orjson

from kuma.tokens.claims import DataplaneIdentity, dataplane_claims, sign
from kuma.tokens.keys import DEFAULT_KID, dataplane_key_prefix, key_name

#: Long enough for any run; expiry is not what kuma-load measures.
VALIDITY = 7 * 24 * 3600.0
#: Seconds to wait for the key: a zone kuma-cp gets it from global over KDS after it is ready.
KEY_WAIT = 60.0


def read_ca(work_dir: Path) -> str:
    return (work_dir / "kuma-cp.crt").read_text()


def signing_key(api_port: int, mesh: str) -> bytes:
    """The mesh's first signing key from kuma-cp's API (created with the mesh at start-up)."""
    name = key_name(dataplane_key_prefix(mesh), DEFAULT_KID)
    url = f"http://127.0.0.1:{api_port}/meshes/{mesh}/secrets/{name}"
    deadline = time.monotonic() + KEY_WAIT
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                document = orjson.loads(response.read())
            return base64.b64decode(document["data"])
        except OSError:
            time.sleep(0.1)  # kuma-cp creates (or a zone receives) the key after it is ready
    raise RuntimeError(f"no signing key {name} at {url}")


def sign_tokens(pem: bytes, node_ids: dict[int, str]) -> dict[int, str]:
    """index -> a token for ``<mesh>.<name>``, valid a week."""
    tokens: dict[int, str] = {}
    for index, node_id in node_ids.items():
        mesh, _, name = node_id.partition(".")
        claims = dataplane_claims(DataplaneIdentity(name=name, mesh=mesh))
        tokens[index] = sign(claims, pem, DEFAULT_KID, VALIDITY)
    return tokens
