"""Authentication in a real kuma-cp: a raw gRPC client without a token registers nothing,
reads nothing and is counted; with a token from the REST API it is served; tokens are issued
to admins only; and no token value ever reaches kuma-cp's log."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from kuma.tokens.claims import DataplaneIdentity, dataplane_claims, sign
from tests.fixtures import ads_stream
from tests.fixtures.envoy import ControlPlane, eventually
from tests.metrics.scrape import Scrape

WEB = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-01",
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 18080, "servicePort": 18081, "tags": {"kuma.io/service": "web"}}],
    },
}


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path / "store")
    try:
        plane.start()
        yield plane
    finally:
        code = plane.stop()
    assert code in (0, None), plane.output()


def api(cp: ControlPlane, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", cp.api_port, timeout=5)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


async def open_stream(cp: ControlPlane, metadata: dict[str, str]) -> tuple[str, object]:
    """One delta ADS stream as web-01: ("ok", first response) or ("refused", GRPCError)."""
    return await ads_stream.open_stream(cp.dp_port, cp.ca, WEB, metadata)


def test_a_client_without_a_token_gets_nothing_and_is_counted(cp: ControlPlane) -> None:
    outcome, error = anyio.run(open_stream, cp, {})
    assert outcome == "refused"
    assert isinstance(error, GRPCError)
    assert error.status == Status.UNAUTHENTICATED
    assert "no token" in str(error.message)
    assert json.loads(api(cp, "GET", "/meshes/default/dataplanes")[1])["total"] == 0
    forged = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.e30.c2lnbmF0dXJl"
    outcome, error = anyio.run(open_stream, cp, {"authorization": forged})
    assert outcome == "refused"
    scrape = Scrape(api(cp, "GET", "/metrics")[1])
    assert scrape.value("kuma_xds_streams_refused_total", reason="no_token") == 1
    assert scrape.value("kuma_xds_streams_refused_total", reason="bad_signature") == 1
    assert scrape.value("kuma_xds_streams_opened_total", protocol="delta") in (None, 0)
    output = cp.output()
    assert "refusing the ADS stream of default.web-01: no token" in output
    assert forged not in output

    token = cp.token("default.web-01")
    outcome, response = anyio.run(open_stream, cp, {"authorization": token})
    assert outcome == "ok", response
    assert json.loads(api(cp, "GET", "/meshes/default/dataplanes")[1])["total"] == 1
    assert token not in cp.output()


def test_token_requests_are_checked(cp: ControlPlane) -> None:
    status, body = api(cp, "POST", "/tokens/dataplane", b'{"name": "x", "validFor": "soon"}')
    assert status == 400
    reasons = {p["field"]: p["reason"] for p in json.loads(body)["invalid_parameters"]}
    assert reasons["mesh"] == "cannot be empty"
    assert reasons["validFor"].startswith("is invalid")
    status, body = api(cp, "POST", "/tokens/dataplane", b'{"mesh": "nope"}')
    assert status == 400
    assert "mesh of name nope is not found" in body
    status, body = api(cp, "POST", "/tokens/zone", b'{"zone": "east", "validFor": "1h"}')
    assert status == 400
    assert "scope" in body
    status, token = api(
        cp, "POST", "/tokens/zone", b'{"zone": "east", "scope": ["ingress"], "validFor": "1h"}'
    )
    assert status == 200
    assert token.count(".") == 2


def test_every_refusal_is_logged_with_its_reason(cp: ControlPlane) -> None:
    """Tokens signed with the mesh's own key (read as an admin), each wrong in one way, and one
    revoked: kuma-cp refuses every one, naming the node and the reason, never the token."""
    status, body = api(cp, "GET", "/meshes/default/secrets/dataplane-token-signing-key-default-1")
    assert status == 200
    pem = base64.b64decode(json.loads(body)["data"])

    def signed(kid: str = "1", now: float | None = None, **claims: Any) -> str:
        identity = DataplaneIdentity(**{"name": "web-01", "mesh": "default", **claims})
        return sign(dataplane_claims(identity), pem, kid, 3600, now=now)

    revoked = signed()
    jti = jwt.decode(revoked, options={"verify_signature": False})["jti"]
    revocations = (
        "type: Secret\nmesh: default\nname: dataplane-token-revocations-default\n"
        f"data: {base64.b64encode(jti.encode()).decode()}\n"
    )
    assert api(cp, "PUT", "/meshes/default/secrets/dataplane-token-revocations-default",
               revocations.encode())[0] == 201  # fmt: skip
    cases = {
        "expired": signed(now=time.time() - 7200),
        "revoked (token id": revoked,
        "the token is for proxy api-01, not web-01": signed(name="api-01"),
        "the token is for mesh other, the Dataplane is in mesh default": signed(mesh="other"),
        "the Dataplane has no tag 'version'": signed(tags={"version": ("v1",)}),
        "the token is for proxy type egress": signed(type="egress"),
        "unknown kid 9 in mesh default": signed(kid="9"),
    }
    for reason, token in cases.items():
        outcome, error = anyio.run(open_stream, cp, {"authorization": token})
        assert outcome == "refused", reason
        assert isinstance(error, GRPCError)
        assert error.status == Status.UNAUTHENTICATED
        assert reason in str(error.message)
        eventually(
            lambda reason=reason: (
                f"refusing the ADS stream of default.web-01: {reason}"  # type: ignore[misc]
                in cp.output()
            ),
            reason,
        )
    output = cp.output()
    assert not [t for t in cases.values() if t in output]
    assert json.loads(api(cp, "GET", "/meshes/default/dataplanes")[1])["total"] == 0
