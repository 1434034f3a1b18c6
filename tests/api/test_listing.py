"""Lists: Kuma's paging (size, opaque offset, next as a full URL, total) and filters."""

from __future__ import annotations

import pytest
from yarl import URL

from kuma.resources import Mesh, decode_one

from .helpers import Api, dataplane_yaml, error, gateway_yaml

pytestmark = pytest.mark.anyio


async def _add(api: Api, document: str) -> None:
    resource = decode_one(document)
    await api.store.create(resource)


async def _names(api: Api, path: str) -> list[str]:
    reply = await api.get(path)
    assert reply.status == 200, reply.json
    return [item["name"] for item in reply.json["items"]]


async def test_pages_follow_next_until_null(api: Api) -> None:
    for i in range(5):
        await _add(api, dataplane_yaml(f"dp-{i}", port=18080 + i))
    seen: list[str] = []
    url: str | None = api.base + "/meshes/default/dataplanes?size=2"
    pages = 0
    while url is not None:
        parsed = URL(url)
        assert parsed.scheme == "http"
        assert f"{parsed.host}:{parsed.port}" == api.base.removeprefix("http://")
        reply = await api.get(parsed.path_qs)
        doc = reply.json
        assert doc["total"] == 5
        assert len(doc["items"]) <= 2
        seen += [item["name"] for item in doc["items"]]
        url = doc["next"]
        pages += 1
    assert seen == [f"dp-{i}" for i in range(5)]
    assert pages == 3


async def test_default_page_size_is_100(api: Api) -> None:
    for i in range(101):
        await api.store.create(Mesh(name=f"m-{i:03}"))
    doc = (await api.get("/meshes")).json
    assert (len(doc["items"]), doc["total"]) == (100, 102)
    assert doc["next"] is not None
    rest = (await api.get(URL(doc["next"]).path_qs)).json
    # "default" sorts first, so the second page holds the last two.
    assert [m["name"] for m in rest["items"]] == ["m-099", "m-100"]
    assert rest["next"] is None


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ("abc", "invalid format"),
        ("1.5", "invalid format"),
        ("1001", "invalid page size of 1001. Maximum page size is 1000"),
        ("0", "invalid page size of 0. Minimum page size is 1"),
        ("-3", "invalid page size of -3. Minimum page size is 1"),
    ],
)
async def test_bad_page_sizes(api: Api, size: str, reason: str) -> None:
    reply = await api.get(f"/meshes?size={size}")
    assert reply.status == 400
    assert reply.json == error(
        400, "Could not retrieve resources", "Invalid page size", [("size", reason)]
    )


async def test_page_size_1000_is_allowed(api: Api) -> None:
    assert (await api.get("/meshes?size=1000")).status == 200


async def test_bad_offset(api: Api) -> None:
    reply = await api.get("/meshes?offset=%%%not-ours")
    assert reply.status == 400
    assert reply.json == error(
        400, "Could not retrieve resources", "Invalid offset", [("offset", "Invalid format")]
    )


async def test_all_dataplanes_across_meshes(api: Api) -> None:
    await api.store.create(Mesh(name="demo"))
    await _add(api, dataplane_yaml("a", mesh="demo"))
    await _add(api, dataplane_yaml("b"))
    doc = (await api.get("/dataplanes")).json
    assert [(i["mesh"], i["name"]) for i in doc["items"]] == [("default", "b"), ("demo", "a")]
    assert doc["total"] == 2
    assert await _names(api, "/meshes/demo/dataplanes") == ["a"]


@pytest.fixture
async def fleet(api: Api) -> Api:
    await _add(api, dataplane_yaml("web-1", service="web", extra_tags={"version": "v1"}))
    await _add(api, dataplane_yaml("web-2", service="web", extra_tags={"version": "v2"}))
    await _add(api, dataplane_yaml("backend-1", service="backend", extra_tags={"version": "v1"}))
    await _add(api, gateway_yaml("gw-delegated"))
    await _add(api, gateway_yaml("gw-builtin", kind="BUILTIN"))
    return api


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("tag=kuma.io/service:web", ["web-1", "web-2"]),
        # Kuma's tag filter is fuzzy: the value is a substring.
        ("tag=kuma.io/service:we", ["web-1", "web-2"]),
        ("tag=kuma.io/service:web&tag=version:v2", ["web-2"]),
        ("tag=version:v1", ["backend-1", "web-1"]),
        ("tag=version:*", ["backend-1", "web-1", "web-2"]),
        ("tag=kuma.io/service:edge", ["gw-builtin", "gw-delegated"]),
        ("tag=not-a-selector", ["backend-1", "gw-builtin", "gw-delegated", "web-1", "web-2"]),
        ("gateway=true", ["gw-builtin", "gw-delegated"]),
        ("gateway=TRUE", ["gw-builtin", "gw-delegated"]),
        ("gateway=false", ["backend-1", "web-1", "web-2"]),
        ("gateway=builtin", ["gw-builtin"]),
        ("gateway=delegated", ["gw-delegated"]),
        ("name=web", ["web-1", "web-2"]),
        ("name=-1", ["backend-1", "web-1"]),
        ("name=web&tag=version:v1", ["web-1"]),
    ],
)
async def test_filters(fleet: Api, query: str, names: list[str]) -> None:
    for path in (
        "/meshes/default/dataplanes",
        "/dataplanes",
        "/meshes/default/dataplanes+insights",
    ):
        doc = (await fleet.get(f"{path}?{query}")).json
        assert [item["name"] for item in doc["items"]] == names
        assert doc["total"] == len(names)


async def test_a_bad_gateway_filter(fleet: Api) -> None:
    reply = await fleet.get("/meshes/default/dataplanes?gateway=maybe")
    assert reply.status == 400
    assert reply.json == error(
        400,
        "Could not retrieve resources",
        "Resource is not valid",
        [("gateway", "should use `true`, `false`, 'builtin' or 'delegated' instead of maybe")],
    )


async def test_filtered_pages_keep_the_filters_in_next(fleet: Api) -> None:
    seen: list[str] = []
    path: str | None = (
        "/meshes/default/dataplanes?tag=version:v&tag=kuma.io/service:e&size=1&name=-"
    )
    while path is not None:
        doc = (await fleet.get(path)).json
        assert doc["total"] == 3
        seen += [item["name"] for item in doc["items"]]
        if doc["next"] is None:
            break
        next_url = URL(doc["next"])
        assert next_url.query.getall("tag") == ["version:v", "kuma.io/service:e"]
        assert next_url.query["name"] == "-"
        assert next_url.query["size"] == "1"
        path = next_url.path_qs
    assert seen == ["backend-1", "web-1", "web-2"]


async def test_name_filter_on_global_types_and_tags_ignored_there(api: Api) -> None:
    for name in ("alpha", "beta", "alphabet"):
        await api.store.create(Mesh(name=name))
    assert await _names(api, "/meshes?name=alpha") == ["alpha", "alphabet"]
    assert await _names(api, "/meshes?tag=a:b&gateway=nonsense") == [
        "alpha",
        "alphabet",
        "beta",
        "default",
    ]
