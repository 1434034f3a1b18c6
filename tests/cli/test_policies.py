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


HTTP_ROUTE = """
type: MeshHTTPRoute
mesh: default
name: backend-split
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    rules:
    - matches: [{path: {type: PathPrefix, value: /api}}]
      default:
        backendRefs:
        - {kind: MeshServiceSubset, name: backend, tags: {version: v1}, weight: 80}
        - {kind: MeshServiceSubset, name: backend, tags: {version: v2}, weight: 20}
"""
TCP_ROUTE = """
type: MeshTCPRoute
mesh: default
name: db-split
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: db}
    rules:
    - default:
        backendRefs: [{kind: MeshService, name: db-replica}]
"""


def test_routes_through_kumactl_and_the_rest_api(cp_url: str) -> None:
    kumactl = Kumactl(cp_url)
    kumactl.ok("apply", "-f", "-", stdin=HTTP_ROUTE)
    kumactl.ok("apply", "-f", "-", stdin=TCP_ROUTE)
    for plural, name in (("meshhttproutes", "backend-split"), ("meshtcproutes", "db-split")):
        listed = kumactl.ok("get", plural).splitlines()
        assert listed[0].split() == ["MESH", "NAME", "AGE"]
        assert [line.split()[:2] for line in listed[1:]] == [["default", name]]
        with urllib.request.urlopen(f"{cp_url}/meshes/default/{plural}/{name}") as reply:
            assert json.load(reply)["name"] == name
    document = json.loads(kumactl.ok("get", "meshhttproute", "backend-split", "-o", "json"))
    refs = document["spec"]["to"][0]["rules"][0]["default"]["backendRefs"]
    assert [ref["weight"] for ref in refs] == [80, 20]

    invalid = HTTP_ROUTE.replace("value: /api", "value: api/")
    result = kumactl("apply", "-f", "-", stdin=invalid.replace("backend-split", "bad"))
    assert result.code == 1
    assert "spec.to[0].rules[0].matches[0].path.value: must be an absolute path" in result.err

    assert kumactl.ok("delete", "meshhttproute", "backend-split") == (
        'deleted MeshHTTPRoute "backend-split"\n'
    )
    assert kumactl.ok("delete", "meshtcproute", "db-split") == 'deleted MeshTCPRoute "db-split"\n'
    assert kumactl("get", "meshtcproute", "db-split").code == 1


ACCESS_LOG = """
type: MeshAccessLog
mesh: default
name: web-logs
spec:
  targetRef: {kind: MeshService, name: web}
  from:
  - targetRef: {kind: Mesh}
    default:
      backends:
      - type: File
        file: {path: /tmp/web-access.log}
"""


def test_mesh_access_logs_through_kumactl_and_rest(cp_url: str) -> None:
    kumactl = Kumactl(cp_url)
    kumactl.ok("apply", "-f", "-", stdin=ACCESS_LOG)
    listed = kumactl.ok("get", "meshaccesslogs").splitlines()
    assert listed[0].split() == ["MESH", "NAME", "AGE"]
    assert [line.split()[:2] for line in listed[1:]] == [["default", "web-logs"]]
    with urllib.request.urlopen(f"{cp_url}/meshes/default/meshaccesslogs/web-logs") as reply:
        document = json.load(reply)
    assert document["spec"]["from"][0]["default"]["backends"][0]["file"] == {
        "path": "/tmp/web-access.log"
    }
    result = kumactl("apply", "-f", "-", stdin=ACCESS_LOG.replace("/tmp/", "logs/"))
    assert result.code == 1
    assert (
        "spec.from[0].default.backends[0].file.path: file backend requires a valid path"
        in result.err
    )
    kumactl.ok("delete", "meshaccesslog", "web-logs")
    assert kumactl.ok("get", "meshaccesslogs").splitlines()[1:] == []


FAULT = """
type: MeshFaultInjection
mesh: default
name: backend-faults
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
  - targetRef: {kind: MeshService, name: web}
    default:
      http:
      - abort: {httpStatus: 503, percentage: "12.5"}
"""


def test_mesh_fault_injections_through_kumactl_and_rest(cp_url: str) -> None:
    kumactl = Kumactl(cp_url)
    kumactl.ok("apply", "-f", "-", stdin=FAULT)
    listed = kumactl.ok("get", "meshfaultinjections").splitlines()
    assert listed[0].split() == ["MESH", "NAME", "AGE"]
    assert [line.split()[:2] for line in listed[1:]] == [["default", "backend-faults"]]
    url = f"{cp_url}/meshes/default/meshfaultinjections/backend-faults"
    with urllib.request.urlopen(url) as reply:
        document = json.load(reply)
    assert document["spec"]["from"][0]["default"]["http"] == [
        {"abort": {"httpStatus": 503, "percentage": "12.5"}}
    ]
    result = kumactl("apply", "-f", "-", stdin=FAULT.replace("503", "700"))
    assert result.code == 1
    assert (
        "spec.from[0].default.http.abort[0].httpStatus: must be in inclusive range [100, 599]"
        in result.err
    )
    kumactl.ok("delete", "meshfaultinjection", "backend-faults")
    assert kumactl.ok("get", "meshfaultinjections").splitlines()[1:] == []


LB_STRATEGY = """
type: MeshLoadBalancingStrategy
mesh: default
name: backend-lb
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      loadBalancer:
        type: RingHash
        ringHash:
          minRingSize: 64
          hashPolicies:
          - {type: Header, header: {name: x-user}, terminal: true}
"""


def test_mesh_load_balancing_strategies_through_kumactl_and_rest(cp_url: str) -> None:
    kumactl = Kumactl(cp_url)
    kumactl.ok("apply", "-f", "-", stdin=LB_STRATEGY)
    listed = kumactl.ok("get", "meshloadbalancingstrategies").splitlines()
    assert listed[0].split() == ["MESH", "NAME", "AGE"]
    assert [line.split()[:2] for line in listed[1:]] == [["default", "backend-lb"]]
    url = f"{cp_url}/meshes/default/meshloadbalancingstrategies/backend-lb"
    with urllib.request.urlopen(url) as reply:
        document = json.load(reply)
    assert document["spec"]["to"][0]["default"]["loadBalancer"]["ringHash"] == {
        "minRingSize": 64,
        "hashPolicies": [{"type": "Header", "header": {"name": "x-user"}, "terminal": True}],
    }
    result = kumactl("apply", "-f", "-", stdin=LB_STRATEGY.replace(" header: {name: x-user},", ""))
    assert result.code == 1
    assert (
        "spec.to[0].default.loadBalancer.ringHash.hashPolicies[0].header: must be defined"
        in result.err
    )
    kumactl.ok("delete", "meshloadbalancingstrategy", "backend-lb")
    assert kumactl.ok("get", "meshloadbalancingstrategies").splitlines()[1:] == []
