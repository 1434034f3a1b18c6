"""The GUI's JSON and files over HTTP: paging and filters on the server, statuses, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from kuma.resources import Dataplane, Mesh, decode_one
from kuma.store.memory import MemoryStore
from tests.api.helpers import PEER_HEADER

from .harness import GuiClient, serve_gui

pytestmark = pytest.mark.anyio


def dataplane(name: str, service: str, *, ready: bool = True, version: str = "v1") -> Dataplane:
    health = "" if ready else "\n    health: {ready: false}"
    text = f"""
type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: 8080
    tags: {{kuma.io/service: {service}, version: {version}}}{health}
  outbound:
  - port: 10001
    tags: {{kuma.io/service: backend}}
"""
    resource = decode_one(text)
    assert isinstance(resource, Dataplane)
    return resource


@pytest.fixture
async def client() -> AsyncIterator[GuiClient]:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    await store.create(Mesh(name="other"))
    for index in range(7):
        await store.create(dataplane(f"web-{index:02}", "web", version=f"v{index % 2}"))
    await store.create(dataplane("backend-01", "backend"))
    await store.create(dataplane("backend-02", "backend", ready=False))
    await store.create(
        decode_one(
            "type: ZoneIngress\nname: zi-1\nzone: east\n"
            "networking: {address: 10.0.0.2, port: 10001, advertisedAddress: 1.2.3.4,"
            " advertisedPort: 10001}\n"
        )
    )
    try:
        async with serve_gui(store) as gui_client:
            for name in ("web-00", "web-03", "backend-02"):
                gui_client.connect("default", name, responses=4, nacks=1)
            yield gui_client
    finally:
        store.close()


async def test_overview_counts_online_and_offline_per_mesh(client: GuiClient) -> None:
    overview = await client.json("/gui/api/overview")
    assert overview["totals"] == {"meshes": 2, "dataplanes": 9, "online": 3, "offline": 6}
    default, other = overview["meshes"]
    assert default["dataplanes"] == {"total": 9, "online": 3, "offline": 6}
    assert default["services"] == 2
    assert other["dataplanes"] == {"total": 0, "online": 0, "offline": 0}
    assert overview["problems"] == []
    assert overview["zones"] == {"ingresses": 1, "egresses": 0}
    assert overview["controlPlane"]["instanceId"] == "cp-test"


async def test_dataplanes_are_paged_and_filtered_on_the_server(client: GuiClient) -> None:
    base = "/gui/api/meshes/default/dataplanes"
    first = await client.json(f"{base}?size=4")
    assert (first["total"], first["inMesh"]) == (9, 9)
    assert [d["name"] for d in first["items"]] == ["backend-01", "backend-02", "web-00", "web-01"]
    second = await client.json(f"{base}?size=4&offset=8")
    assert [d["name"] for d in second["items"]] == ["web-06"]
    online = await client.json(f"{base}?status=online")
    assert [d["name"] for d in online["items"]] == ["backend-02", "web-00", "web-03"]
    row = online["items"][1]
    assert (row["status"], row["responses"], row["rejected"], row["envoy"]) == (
        "online",
        4,
        1,
        "1.32.0",
    )
    offline_web = await client.json(f"{base}?status=offline&tag=kuma.io/service:web&name=web-0")
    assert [d["name"] for d in offline_web["items"]] == [
        "web-01",
        "web-02",
        "web-04",
        "web-05",
        "web-06",
    ]
    assert offline_web["total"] == 5
    by_version = await client.json(f"{base}?tag=version:v1&tag=kuma.io/service:we")
    assert [d["name"] for d in by_version["items"]] == ["web-01", "web-03", "web-05"]
    assert (await client.json(f"{base}?tag=absent"))["total"] == 0


async def test_services_show_instances_and_health(client: GuiClient) -> None:
    services = await client.json("/gui/api/meshes/default/services")
    by_name = {s["name"]: s for s in services["items"]}
    # backend-02 is online but not ready; backend-01 is offline: nothing healthy.
    assert by_name["backend"] == {
        "name": "backend",
        "status": "offline",
        "instances": 2,
        "healthy": 0,
        "online": 1,
    }
    assert by_name["web"]["status"] == "partially degraded"
    assert (by_name["web"]["instances"], by_name["web"]["healthy"]) == (7, 2)
    assert (await client.json("/gui/api/meshes/default/services?name=we"))["total"] == 1


async def test_dataplane_page_and_served_config(client: GuiClient) -> None:
    detail = await client.json("/gui/api/meshes/default/dataplanes/web-00")
    assert detail["status"] == "online"
    assert detail["inbounds"][0]["service"] == "web"
    assert detail["outbounds"][0]["service"] == "backend"
    assert detail["yaml"].startswith("type: Dataplane\nmesh: default\nname: web-00\n")
    assert detail["insight"]["subscriptions"][0]["controlPlaneInstanceId"] == "cp-test"
    assert [n["error"] for n in detail["nacks"]] == ["rejected for a test"]
    assert detail["nacks"][0]["type"] == "cds"
    assert (await client.json("/gui/api/meshes/default/dataplanes/web-01"))["nacks"] == []

    served = await client.json("/meshes/default/dataplanes/web-00/_config")
    clusters = served["xds"]["type.googleapis.com/envoy.config.cluster.v3.Cluster"]
    assert clusters["backend"]["type"] == "EDS"
    assert set(clusters) == set(
        served["versions"]["type.googleapis.com/envoy.config.cluster.v3.Cluster"]
    )
    listeners = served["xds"]["type.googleapis.com/envoy.config.listener.v3.Listener"]
    assert any(name.startswith("inbound:") for name in listeners)
    status, body, _ = await client.get(
        "/meshes/default/dataplanes/web-00/_config", **{PEER_HEADER: "203.0.113.7"}
    )
    assert status == 403, body  # a remote caller without the admin token
    assert b"a proxy's served configuration is allowed only from loopback" in body
    # The GUI's own documents are reads like the REST API's: open to remote callers.
    status, _, _ = await client.get(
        "/gui/api/meshes/default/dataplanes/web-00", **{PEER_HEADER: "203.0.113.7"}
    )
    assert status == 200
    missing = await client.json("/meshes/default/dataplanes/nope/_config", status=404)
    assert missing["title"] == "Could not retrieve a proxy config"


TIMEOUT = """\
type: MeshTimeout
name: {name}
mesh: default
spec:
  targetRef:
    kind: Mesh
  to:
  - targetRef:
      kind: Mesh
    default:
      idleTimeout: 20s
"""


async def test_policies_are_counted_and_listed_per_mesh(client: GuiClient) -> None:
    with client.gui.feed.subscribe() as page:
        for name in ("timeouts-b", "timeouts-a"):
            await client.gui.store.create(decode_one(TIMEOUT.format(name=name)))
        heard: set[str] = set()
        with anyio.fail_after(5):
            while not {"timeouts-a", "timeouts-b"} <= heard:
                heard.update(n["name"] for n in await page.next_batch(gather=0) if "name" in n)
    listed = await client.json("/gui/api/meshes/default/policies")
    assert listed["kinds"] == [
        {"kind": "MeshTimeout", "total": 2, "names": ["timeouts-a", "timeouts-b"]}
    ]
    assert (await client.json("/gui/api/meshes/default"))["policies"] == {"MeshTimeout": 2}
    assert (await client.json("/gui/api/meshes/other/policies"))["kinds"] == []


async def test_a_gateway_is_listed_with_its_type_and_service(client: GuiClient) -> None:
    with client.gui.feed.subscribe() as page:
        await client.gui.store.create(
            decode_one(
                "type: Dataplane\nmesh: other\nname: edge\nnetworking:\n  address: 10.0.0.9\n"
                "  gateway:\n    type: BUILTIN\n    tags: {kuma.io/service: edge}\n"
            )
        )
        with anyio.fail_after(5):
            while not any(n.get("name") == "edge" for n in await page.next_batch(gather=0)):
                pass
    (row,) = (await client.json("/gui/api/meshes/other/dataplanes"))["items"]
    assert (row["gateway"], row["services"], row["inbounds"]) == ("BUILTIN", ["edge"], 0)
    detail = await client.json("/gui/api/meshes/other/dataplanes/edge")
    assert detail["gateway"] == {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}
    (service,) = (await client.json("/gui/api/meshes/other/services"))["items"]
    assert (service["name"], service["instances"], service["status"]) == ("edge", 1, "offline")


async def test_bad_queries_and_unknown_things_are_clear_errors(client: GuiClient) -> None:
    bad = await client.json("/gui/api/meshes/default/dataplanes?status=maybe", status=400)
    assert bad["invalid_parameters"][0]["field"] == "status"
    assert "online, offline" in bad["invalid_parameters"][0]["reason"]
    size = await client.json("/gui/api/meshes/default/dataplanes?size=100000", status=400)
    assert size["invalid_parameters"] == [
        {"field": "size", "reason": "must be between 1 and 500, got 100000"}
    ]
    offset = await client.json("/gui/api/meshes/default/dataplanes?offset=x", status=400)
    assert offset["invalid_parameters"][0]["field"] == "offset"
    assert (await client.json("/gui/api/meshes/nope/dataplanes", status=404))["detail"] == (
        "no mesh 'nope'"
    )
    await client.json("/gui/api/meshes/default/dataplanes/nope", status=404)


async def test_files_are_served_with_etags_and_a_strict_policy(client: GuiClient) -> None:
    status, body, headers = await client.get("/gui/")
    assert status == 200
    assert b'<script type="module" src="app.js"></script>' in body
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    status, _, again = await client.get("/gui/", **{"If-None-Match": headers["ETag"]})
    assert status == 304
    assert again["ETag"] == headers["ETag"]
    status, body, headers = await client.get("/gui/app.js")
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert b"EventSource" in body
    for module in ("dom.js", "overview.js", "mesh.js", "dataplane.js", "style.css"):
        assert (await client.get(f"/gui/{module}"))[0] == 200, module
    assert (await client.get("/gui/nope.js"))[0] == 404
    assert (await client.get("/gui/../pyproject.toml"))[0] == 404
    async with client.session.get(client.base + "/gui", allow_redirects=False) as reply:
        assert reply.status == 302
        assert reply.headers["Location"] == "/gui/"
