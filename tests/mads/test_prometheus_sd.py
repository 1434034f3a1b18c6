"""The MADS answer read exactly as Prometheus' kuma_sd reads it (tests/mads/kuma_sd.py): the
label sets Prometheus would scrape by, for the assignments of a real (memory) store."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from kuma.mads.http import FETCH_PATH

from .kuma_sd import HEADERS, QUERY, request_body, targets
from .test_fetch import running

pytestmark = pytest.mark.anyio


async def test_prometheus_reads_every_sidecar_target() -> None:
    async with running() as mads:
        url = mads.url + FETCH_PATH + QUERY
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=request_body(""), headers=HEADERS) as reply,
        ):
            assert reply.status == 200
            raw = await reply.read()
        found = sorted(targets(raw), key=lambda t: t["instance"])
        common = {
            "__meta_kuma_mesh": "default",
            "__scheme__": "http",
            "__metrics_path__": "/metrics",
        }
        assert found == [
            {
                **common,
                "__meta_kuma_service": "backend",
                "__meta_kuma_dataplane": "backend-1",
                "instance": "backend-1",
                "__address__": "10.0.0.2:5670",
                "__meta_kuma_label_kuma_io_service": "backend",
                "__meta_kuma_label_kuma_io_services": ",backend,",
            },
            {
                **common,
                "__meta_kuma_service": "web",
                "__meta_kuma_dataplane": "web-1",
                "instance": "web-1",
                "__address__": "10.0.0.1:5670",
                "__meta_kuma_label_kuma_io_service": "web",
                "__meta_kuma_label_kuma_io_services": ",web,",
            },
        ]
        # The version Prometheus keeps and sends back next time (the long poll: test_fetch.py).
        assert orjson.loads(raw)["version_info"] == mads.index.version
