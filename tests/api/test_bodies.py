"""PUT bodies: malformed JSON/YAML named by line and field, the size limit, and that a refused
request writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kuma.api import ApiSettings
from kuma.store.memory import MemoryStore

from .helpers import Api, dataplane_yaml, error, serve

pytestmark = pytest.mark.anyio

WEB = "/meshes/default/dataplanes/web-01"


async def _nothing_written(api: Api) -> None:
    assert (await api.store.list("Dataplane")).total == 0


@pytest.mark.parametrize(
    ("body", "content_type", "detail", "parameters"),
    [
        (
            '{"type": "Dataplane",\n "mesh": "default",\n "name": }',
            "application/json",
            "request body:3: invalid JSON: unexpected character",
            [],
        ),
        (
            "type: Dataplane\nmesh: default\nname: web-01\nnetworking: [\n",
            "application/yaml",
            "request body:5: invalid YAML",
            [],
        ),
        (
            "type: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 10.0.0.1\n"
            "  inbound:\n  - port: eighty\n",
            "application/yaml",
            "request body:7: networking.inbound[0].port: Expected `int`, got `str`",
            [],
        ),
        (
            '{"type": "Dataplane", "mesh": "default", "name": "web-01", "networkin": {}}',
            "application/json",
            "request body: networkin: unknown field",
            [],
        ),
        (
            "type: Dataplane\nmesh: default\nname: web-01\n---\ntype: Mesh\nname: x\n",
            "application/yaml",
            "request body: expected exactly one resource, found 2",
            [],
        ),
        ("", "application/yaml", "request body: expected exactly one resource, found 0", []),
        (
            '[{"type": "Mesh", "name": "a"}]',
            "application/json",
            "request body: expected exactly one resource, found 1",
            [],
        ),
        (
            "type: Dataplane\nmesh: default\nname: web-01\n",
            "application/json",
            "request body:1: invalid JSON: ",
            [],
        ),
        (
            '{"type": "Dataplane", "mesh": "default", "name": 4}',
            "application/json",
            "request body: name: Expected `str`, got `int`",
            [],
        ),
    ],
)
async def test_malformed_bodies(
    api: Api, body: str, content_type: str, detail: str, parameters: list[tuple[str, str]]
) -> None:
    reply = await api.put(WEB, body, content_type=content_type)
    assert reply.status == 400, reply.json
    doc = reply.json
    assert doc["title"] == "Bad Request"
    assert doc["detail"].startswith(detail), doc["detail"]
    expected = error(400, "Bad Request", doc["detail"], parameters)
    assert doc == expected
    await _nothing_written(api)


async def test_a_body_that_is_not_utf8(api: Api) -> None:
    reply = await api.put(WEB, b"type: Mesh\nname: \xff\xfe\n")
    assert reply.status == 400
    assert "not UTF-8" in reply.json["detail"]


@pytest.fixture
async def small_api(store: MemoryStore) -> AsyncIterator[Api]:
    async with serve(store, ApiSettings(max_request_bytes=512)) as api:
        yield api


async def test_a_body_over_the_limit_is_413(small_api: Api) -> None:
    body = dataplane_yaml("web-01") + "#" + "x" * 600 + "\n"
    reply = await small_api.put(WEB, body)
    assert reply.status == 413
    assert reply.json == error(
        413,
        "Request Entity Too Large",
        "the request body is larger than 512 bytes (apiServer.maxRequestBytes)",
    )
    await _nothing_written(small_api)
    # A body at the limit is read.
    fits = dataplane_yaml("web-01")
    fits += "#" * (512 - len(fits) - 1) + "\n"
    assert len(fits) == 512
    assert (await small_api.put(WEB, fits)).status == 201


async def test_a_chunked_body_over_the_limit_is_413(small_api: Api) -> None:
    """No Content-Length: the server finds out while reading, and stops there."""

    async def chunks() -> AsyncIterator[bytes]:
        yield dataplane_yaml("web-01").encode()
        for _ in range(100):
            yield b"#" + b"x" * 99 + b"\n"

    async with small_api.session.put(
        small_api.base + WEB, data=chunks(), headers={"Content-Type": "application/yaml"}
    ) as reply:
        assert reply.status == 413
        assert (await reply.json())["status"] == 413
    await _nothing_written(small_api)


async def test_the_default_limit_is_one_mebibyte(api: Api) -> None:
    assert ApiSettings().max_request_bytes == 1024 * 1024
    too_big = dataplane_yaml("web-01") + "#" * (1024 * 1024) + "\n"
    reply = await api.put(WEB, too_big)
    assert reply.status == 413
    await _nothing_written(api)
