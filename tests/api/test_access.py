"""Access: loopback callers may write; others may only read unless they present the admin
token. See helpers.py for how a non-loopback peer is produced without leaving loopback."""

from __future__ import annotations

from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from kuma.api import ApiError, ApiSettings, is_loopback
from kuma.api.access import access_middleware
from kuma.api.tokens import IssuerSettings, token_routes
from kuma.store.memory import MemoryStore
from kuma.tokens.claims import header_kid
from tests.tokens.helpers import key, signing_secret

from .helpers import ADMIN_TOKEN, Api, dataplane_yaml, error, serve

pytestmark = pytest.mark.anyio

WEB = "/meshes/default/dataplanes/web-01"
REMOTE = "203.0.113.7"


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("203.0.113.7", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("0.0.0.0", False),
        ("localhost", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_addresses(remote: str | None, loopback: bool) -> None:
    assert is_loopback(remote) is loopback


async def test_loopback_callers_may_write(api: Api) -> None:
    assert (await api.put(WEB, dataplane_yaml("web-01"))).status == 201
    assert (await api.delete(WEB)).status == 200


async def test_remote_callers_may_only_read(api: Api) -> None:
    await api.put(WEB, dataplane_yaml("web-01"))
    assert (await api.get(WEB, peer=REMOTE)).status == 200
    assert (await api.get("/meshes", peer=REMOTE)).status == 200
    assert (await api.get("/", peer=REMOTE)).status == 200
    detail = (
        "{} is allowed only from loopback or with the admin token "
        "(Authorization: Bearer <apiServer.auth.adminToken>); this caller may only read"
    )
    for method, body in (("PUT", dataplane_yaml("web-01", port=1)), ("DELETE", None)):
        reply = await api.call(method, WEB, body, peer=REMOTE)
        assert reply.status == 403
        assert reply.json == error(403, "Access Denied", detail.format(method))
    stored = (await api.get(WEB)).json
    assert stored["networking"]["inbound"][0]["port"] == 18080


async def test_the_admin_token_grants_writes_from_anywhere(api: Api) -> None:
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    created = await api.put(WEB, dataplane_yaml("web-01"), headers=bearer, peer=REMOTE)
    assert created.status == 201
    assert (await api.delete(WEB, headers=bearer, peer="10.1.2.3")).status == 200


@pytest.mark.parametrize("peer", [REMOTE, None])
@pytest.mark.parametrize("header", ["Bearer wrong", "Basic abc", f"Token {ADMIN_TOKEN}", "Bearer"])
async def test_a_wrong_token_is_401_wherever_it_comes_from(
    api: Api, peer: str | None, header: str
) -> None:
    reply = await api.put(
        WEB, dataplane_yaml("web-01"), headers={"Authorization": header}, peer=peer
    )
    assert reply.status == 401
    assert reply.json == error(401, "Unauthenticated", "invalid admin token")
    assert (await api.store.list("Dataplane")).total == 0


async def test_without_a_configured_token_remote_writes_are_refused(store: MemoryStore) -> None:
    async with serve(store, ApiSettings(admin_token="")) as api:
        bearer = {"Authorization": "Bearer anything"}
        refused = await api.put(WEB, dataplane_yaml("web-01"), headers=bearer, peer=REMOTE)
        assert refused.status == 403
        # Loopback callers need no token, and a stray header does not lock them out.
        assert (await api.put(WEB, dataplane_yaml("web-01"), headers=bearer)).status == 201


def _request(method: str, peer: tuple[object, ...], headers: dict[str, str]) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        peer if name == "peername" else default
    )
    return make_mocked_request(method, WEB, headers=headers, transport=transport)


async def test_the_peer_is_the_socket_peer_not_a_header() -> None:
    """The middleware judges ``request.remote``, which aiohttp takes from the transport's peer
    name; forwarding headers claiming loopback change nothing."""
    middleware = access_middleware(ADMIN_TOKEN)
    handled: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        handled.append(request.method)
        return web.Response()

    spoofing = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1", "Host": "127.0.0.1"}
    remote = _request("PUT", ("198.51.100.4", 40000), spoofing)
    assert remote.remote == "198.51.100.4"
    with pytest.raises(ApiError) as refused:
        await middleware(remote, handler)
    assert refused.value.status == 403

    assert (await middleware(_request("GET", ("198.51.100.4", 40000), {}), handler)).status == 200
    assert (await middleware(_request("PUT", ("127.0.0.1", 40000), {}), handler)).status == 200
    assert (await middleware(_request("DELETE", ("::1", 40000, 0, 0), {}), handler)).status == 200
    assert handled == ["GET", "PUT", "DELETE"]


async def test_the_server_binds_only_to_its_interface(store: MemoryStore) -> None:
    """Bound to 127.0.0.2 (loopback, but not 127.0.0.1): reachable there and only there, and a
    caller from 127.0.0.2 is a loopback caller."""
    async with serve(store, host="127.0.0.2") as api:
        assert (await api.put(WEB, dataplane_yaml("web-01"))).status == 201
        port = api.base.rsplit(":", 1)[1]
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.session.get(f"http://127.0.0.1:{port}/")


SECRET_PATH = "/meshes/default/secrets/signing"
SECRET_DOC = "type: Secret\nmesh: default\nname: signing\ndata: c2VjcmV0\n"


async def test_secrets_are_admin_only_even_to_read(store: MemoryStore) -> None:
    async with serve(store, ApiSettings(admin_token=ADMIN_TOKEN)) as api:
        assert (await api.put(SECRET_PATH, SECRET_DOC)).status == 201
        shared = "type: GlobalSecret\nname: tls\ndata: Y2VydA==\n"
        assert (await api.put("/global-secrets/tls", shared)).status == 201
        for path in (
            SECRET_PATH,
            "/meshes/default/secrets",
            "/global-secrets/tls",
            "/global-secrets",
        ):
            refused = await api.get(path, peer=REMOTE)
            assert refused.status == 403, path
            assert b"c2VjcmV0" not in refused.body
            assert b"Y2VydA==" not in refused.body
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        got = await api.get(SECRET_PATH, peer=REMOTE, headers=admin)
        assert got.status == 200
        assert got.json["data"] == "c2VjcmV0"
        listed = await api.get("/global-secrets", peer=REMOTE, headers=admin)
        assert [i["name"] for i in listed.json["items"]] == ["tls"]
        assert (await api.get(SECRET_PATH)).json["data"] == "c2VjcmV0"  # loopback: admin


async def test_a_bad_secret_is_refused_without_its_value(api: Api) -> None:
    bad = SECRET_DOC.replace("c2VjcmV0", "'p@ssw0rd not base64'")
    refused = await api.put(SECRET_PATH, bad)
    assert refused.status == 400
    assert b"p@ssw0rd" not in refused.body
    assert refused.json["invalid_parameters"] == [
        {"field": "data", "reason": "must be base64 (the value itself is not shown)"}
    ]


async def test_tokens_are_issued_to_admins_only(store: MemoryStore) -> None:
    await store.create(signing_secret("default", "1", key(1)))
    routes = token_routes(store, IssuerSettings())
    async with serve(store, ApiSettings(admin_token=ADMIN_TOKEN), extra_routes=routes) as api:
        body = '{"mesh": "default", "name": "web-01", "validFor": "1h"}'
        refused = await api.call("POST", "/tokens/dataplane", body, peer=REMOTE)
        assert refused.status == 403
        assert "allowed only from loopback or with the admin token" in refused.json["detail"]
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        issued = await api.call("POST", "/tokens/dataplane", body, peer=REMOTE, headers=admin)
        assert issued.status == 200
        assert issued.headers["Content-Type"].startswith("text/plain")
        assert header_kid(issued.body.decode()) == "1"
    async with serve(
        store, extra_routes=token_routes(store, IssuerSettings(dataplane=False))
    ) as api:
        disabled = await api.call("POST", "/tokens/dataplane", '{"mesh": "default"}')
        assert disabled.status == 400
        assert "disabled" in disabled.json["detail"]
