"""``GET /meshes/{mesh}/dataplanes/{name}/_rules`` for a builtin gateway Dataplane: the policies
selecting the listeners of the MeshGateway it serves, compared with Kuma 2.7's api-server case
``inspect/dataplanes/_rules/meshgateway`` (copied into tests/gateway/kuma/; its MeshProxyPatch,
a kind this project does not have, is left out of input and golden), and a ``from`` rule listed
per listener port with the gateway's tags. ``GET /meshes/{mesh}/meshgateways/{name}/_rules``:
Kuma's ``inspect/meshgateways/_rules`` cases (tests/gateway/kuma/meshgateway-rules/; the first
line of each input names the request and the status)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kuma.resources import decode
from kuma.store.memory import MemoryStore
from tests.api.helpers import serve

from .test_kuma_golden import KUMA

PATH = "/meshes/default/dataplanes/dp-1/_rules"
FROM_TIMEOUT = """\
type: MeshTimeout
mesh: default
name: gateway-inbound
spec:
  targetRef: {kind: Mesh, proxyTypes: [Gateway]}
  from: [{targetRef: {kind: Mesh}, default: {idleTimeout: 7s}}]
"""


def _input(path: Path) -> str:
    documents = [d for d in path.read_text().split("---\n") if "type: MeshProxyPatch" not in d]
    return "---\n".join(documents)


def _golden(path: Path) -> dict[str, Any]:
    golden: dict[str, Any] = json.loads(path.read_text())
    if "rules" in golden:
        golden["rules"] = [r for r in golden["rules"] if r["type"] != "MeshProxyPatch"]
    return golden


@pytest.mark.anyio
async def test_a_builtin_gateways_rules_are_kumas() -> None:
    store = MemoryStore()
    for resource in decode(_input(KUMA / "api-dataplane-rules-meshgateway.input.yaml")):
        await store.create(resource)
    golden = _golden(KUMA / "api-dataplane-rules-meshgateway.golden.json")
    async with serve(store) as api:
        assert (await api.get(PATH)).json == golden
        for resource in decode(FROM_TIMEOUT):
            await store.create(resource)
        (timeouts,) = (await api.get(PATH)).json["rules"]
    assert timeouts["fromRules"] == [
        {
            "inbound": {"port": 8080, "tags": {"kuma.io/service": "gw-1", "another": "v1"}},
            "rules": [
                {
                    "conf": {"idleTimeout": "7s"},
                    "matchers": [],
                    "origin": [
                        {"mesh": "default", "name": "gateway-inbound", "type": "MeshTimeout"}
                    ],
                }
            ],
        }
    ]
    store.close()


CASES = sorted(
    p.stem.removesuffix(".input") for p in (KUMA / "meshgateway-rules").glob("*.input.yaml")
)


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES)
async def test_meshgateway_rules_are_kumas(case: str) -> None:
    source = KUMA / "meshgateway-rules" / f"{case}.input.yaml"
    request, status = source.read_text().splitlines()[0].removeprefix("#").split()
    store = MemoryStore()
    for resource in decode(_input(source)):
        await store.create(resource)
    async with serve(store) as api:
        reply = await api.get(request)
    assert reply.status == int(status)
    assert reply.json == _golden(KUMA / "meshgateway-rules" / f"{case}.golden.json")
    store.close()
