"""``GET /meshes/{mesh}/dataplanes/{name}/_rules`` for a builtin gateway Dataplane: the policies
selecting the listeners of the MeshGateway it serves, compared with Kuma 2.7's api-server case
``inspect/dataplanes/_rules/meshgateway`` (copied into tests/gateway/kuma/; its MeshProxyPatch,
a kind this project does not have, is left out of input and golden), and a ``from`` rule listed
per listener port with the gateway's tags."""

from __future__ import annotations

import json

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


def _input() -> str:
    text = (KUMA / "api-dataplane-rules-meshgateway.input.yaml").read_text()
    documents = [d for d in text.split("---\n") if "type: MeshProxyPatch" not in d]
    return "---\n".join(documents)


@pytest.mark.anyio
async def test_a_builtin_gateways_rules_are_kumas() -> None:
    store = MemoryStore()
    for resource in decode(_input()):
        await store.create(resource)
    golden = json.loads((KUMA / "api-dataplane-rules-meshgateway.golden.json").read_text())
    golden["rules"] = [r for r in golden["rules"] if r["type"] != "MeshProxyPatch"]
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
