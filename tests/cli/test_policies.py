"""kumactl with policy kinds, against a real kuma-cp: Mesh ``default``'s default policies are
listed with Kuma's columns, a policy is applied, read back, refused with Kuma's message when
invalid, and deleted; the ``_rules`` endpoint shows what applies to a Dataplane."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from .helpers import Kumactl, running_cp

RETRY = """
type: MeshRetry
mesh: default
name: backend-once
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default: {http: {numRetries: 1}}
"""
DATAPLANE = """
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - {port: 18080, tags: {kuma.io/service: web}}
  outbound:
  - {port: 10001, tags: {kuma.io/service: backend}}
"""


@pytest.fixture(scope="module")
def cp_url() -> Iterator[str]:
    with running_cp({}) as cp:
        yield cp.url


def test_policies_through_kumactl_and_the_rules_endpoint(cp_url: str) -> None:
    kumactl = Kumactl(cp_url)
    listed = kumactl.ok("get", "meshtimeouts").splitlines()
    assert listed[0].split() == ["MESH", "NAME", "AGE"]
    assert sorted(line.split()[1] for line in listed[1:]) == [
        "mesh-gateways-timeout-all-default",
        "mesh-timeout-all-default",
    ]

    kumactl.ok("apply", "-f", "-", stdin=RETRY)
    document = json.loads(kumactl.ok("get", "meshretry", "backend-once", "-o", "json"))
    assert document["spec"]["to"][0]["default"] == {"http": {"numRetries": 1}}

    invalid = RETRY.replace("kind: MeshService, name: backend", "kind: MeshSubset")
    result = kumactl("apply", "-f", "-", stdin=invalid)
    assert result.code == 1
    assert "spec.to[0].targetRef.kind: value is not supported" in result.err

    kumactl.ok("apply", "-f", "-", stdin=DATAPLANE)
    with urllib.request.urlopen(f"{cp_url}/meshes/default/dataplanes/web-1/_rules") as reply:
        rules = json.load(reply)
    by_type = {entry["type"]: entry for entry in rules["rules"]}
    retry_rules = by_type["MeshRetry"]["toRules"]
    # The MeshService rule first (most specific), merged over the default MeshRetry.
    assert retry_rules[0]["matchers"] == [
        {"key": "kuma.io/service", "not": False, "value": "backend"}
    ]
    assert retry_rules[0]["conf"]["http"]["numRetries"] == 1
    assert retry_rules[0]["conf"]["http"]["perTryTimeout"] == "16s"
    assert [o["name"] for o in retry_rules[0]["origin"]] == [
        "backend-once",
        "mesh-retry-all-default",
    ]

    assert kumactl.ok("delete", "meshretry", "backend-once") == 'deleted MeshRetry "backend-once"\n'
    assert kumactl("get", "meshretry", "backend-once").code == 1
