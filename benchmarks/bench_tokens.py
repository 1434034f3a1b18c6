"""Dataplane-token verification per ADS stream, cold (RSA-2048 signature checked) and cached
(the verified-token cache: SHA-256 of the token, key identity, expiry, revocation), through the
same path the authenticator uses (``TokenVerifier.verify``); and the whole ``authenticate``
(Dataplane from the node metadata, claims checked, grant registered) with a cached token.

Run: ``python benchmarks/bench_tokens.py [tokens]``. Prints medians in microseconds.
Targets: cached <= 20 us, cold <= 300 us.
"""

from __future__ import annotations

import base64
import statistics
import sys
import time
from datetime import UTC, datetime

import anyio
import orjson
from envoy.config.core.v3.base_pb2 import Node

from kuma.resources import ResourceMeta, Secret
from kuma.store import Operation, ResourceEvent
from kuma.store.memory import MemoryStore
from kuma.tokens.authenticator import TokenAuthenticator
from kuma.tokens.claims import DataplaneIdentity, dataplane_claims, sign
from kuma.tokens.keyring import TokenKeys
from kuma.tokens.keys import new_signing_key
from kuma.tokens.live import LiveGrants
from kuma.tokens.verifier import TokenVerifier


def _keys(pem: bytes) -> TokenKeys:
    keys = TokenKeys()
    now = datetime.now(UTC)
    secret = Secret(
        mesh="default",
        name="dataplane-token-signing-key-default-1",
        data=base64.b64encode(pem).decode(),
    )
    keys.apply(ResourceEvent(Operation.CREATE, secret, ResourceMeta("1", now, now), 1))
    return keys


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main(count: int) -> None:
    pem = new_signing_key()
    keys = _keys(pem)
    tokens = [
        sign(dataplane_claims(DataplaneIdentity(name=f"web-{i}", mesh="default")), pem, "1", 3600)
        for i in range(count)
    ]
    verifier = TokenVerifier(keys)
    cold: list[float] = []
    for token in tokens:
        started = time.perf_counter()
        verifier.verify(token, "default")
        cold.append(time.perf_counter() - started)
    cached: list[float] = []
    for _ in range(5):
        for token in tokens:
            started = time.perf_counter()
            verifier.verify(token, "default")
            cached.append(time.perf_counter() - started)
    print(f"token: {len(tokens[0])} bytes, RSA-2048, {count} distinct tokens")
    print(f"verify cold (signature checked): median {_median_us(cold):.1f} us")
    print(f"verify cached (hash hit):        median {_median_us(cached):.1f} us")

    async def authenticate_all() -> list[float]:
        live = LiveGrants()
        authenticator = TokenAuthenticator(MemoryStore(), verifier, live)
        samples: list[float] = []
        for i, token in enumerate(tokens):
            resource = {
                "type": "Dataplane",
                "mesh": "default",
                "name": f"web-{i}",
                "networking": {
                    "address": "10.0.0.1",
                    "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
                },
            }
            node = Node(id=f"default.web-{i}")
            node.metadata.update({"dataplane.resource": orjson.dumps(resource).decode()})
            started = time.perf_counter()
            grant = await authenticator.authenticate(node.id, node, {"authorization": token})
            samples.append(time.perf_counter() - started)
            grant.release()
        return samples

    whole = anyio.run(authenticate_all)
    print(f"authenticate (cached token, Dataplane decoded from metadata): "
          f"median {_median_us(whole):.1f} us")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
