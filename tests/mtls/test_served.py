"""mTLS end to end in one process: store → engine + mTLS service → composite source; the
config dump (REST and kumactl, keys redacted) and the insight's mTLS section."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest

from kuma.api.config_dump import config_dump_routes
from kuma.cli.main import main as kumactl
from kuma.insights import Insights, MemoryInsightStore
from kuma.mtls.insight import report_certificates
from kuma.mtls.service import MtlsService
from kuma.resources import Mesh, from_document
from kuma.store import Store, open_store
from kuma.xds import types
from kuma.xds.composite import CompositeSource
from kuma.xds.engine import Engine
from tests.api.helpers import ADMIN_TOKEN, Api, serve

pytestmark = pytest.mark.anyio

MESH = Mesh(
    name="default",
    mtls={
        "enabledBackend": "ca-1",
        "backends": [
            {
                "name": "ca-1",
                "type": "builtin",
                "dpCert": {"rotation": {"expiration": "1h"}},
                "conf": {"caCert": {"keyType": "ECDSA"}},
            }
        ],
    },
)


def dataplane(name: str, service: str) -> Any:
    return from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": service}}],
                "outbound": [{"port": 10001, "tags": {"kuma.io/service": "backend"}}],
            },
        }
    )


@asynccontextmanager
async def control_plane(store: Store) -> AsyncIterator[tuple[CompositeSource, MtlsService]]:
    mtls = MtlsService(store)
    engine = Engine(identity_ready=mtls.identity_ready)
    source = CompositeSource(engine, {types.SECRET: mtls.source})
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, store)
        tg.start_soon(mtls.run)
        await engine.wait_synced()
        yield source, mtls
        tg.cancel_scope.cancel()


async def test_config_dump_and_insight() -> None:
    # Two instances share one insight store; the proxy's stream is on the first.
    insight_store = MemoryInsightStore()
    serving = Insights(insight_store, flush_interval=10, instance_id="cp-1")
    other = Insights(insight_store, flush_interval=10, instance_id="cp-2")
    async with open_store("memory", {}) as store:
        await store.create(MESH)
        await store.create(dataplane("web-1", "web"))
        await store.create(dataplane("backend-1", "backend"))
        async with (
            control_plane(store) as (source, mtls),
            source.watch_proxy("default.web-1") as watch,
            serve(store, insights=serving, extra_routes=config_dump_routes(store, source)) as api,
            serve(store, insights=other) as other_api,
        ):
            report_certificates(serving.tracker, mtls)
            serving.tracker.on_stream_open(1, "default.web-1", "delta", "1.40.0")
            with anyio.fail_after(20):
                while len(watch.resources(types.SECRET)) < 2:
                    await watch.wait_for_changes()
                    watch.take_changes()
            await check_dump(api)
            await check_insight(api)
            # Flushed, the other instance shows the same section.
            await serving.flusher.flush_all()
            await check_insight(other_api)
            # A rotation marks the subscription changed (nothing else did since the flush): the
            # next flush carries the new certificate.
            assert not serving.tracker.has_dirty
            rotated = anyio.Event()
            touch = mtls.on_certificates
            assert touch is not None

            def told(nodes: list[str]) -> None:
                touch(nodes)
                rotated.set()

            mtls.on_certificates = told
            mtls.identities.rotate_due(time.time() + 7200)
            with anyio.fail_after(20):
                await rotated.wait()
            await serving.flusher.flush_all()
            await check_insight(other_api, regenerations=2)
            await check_kumactl(api)


async def check_dump(api: Api) -> None:
    reply = await api.get("/meshes/default/dataplanes/web-1/xds")
    assert reply.status == 200, reply.body
    configs = {c["@type"].rsplit(".", 1)[-1]: c for c in reply.json["configs"]}
    assert set(configs) == {
        "ClustersConfigDump",
        "EndpointsConfigDump",
        "ListenersConfigDump",
        "RoutesConfigDump",
        "SecretsConfigDump",
    }
    secrets = {s["name"]: s for s in configs["SecretsConfigDump"]["dynamicActiveSecrets"]}
    assert set(secrets) == {"identity_cert:secret:default", "mesh_ca:secret:default"}
    identity = secrets["identity_cert:secret:default"]["secret"]["tlsCertificate"]
    # The key is redacted (protojson shows bytes as base64), the certificate is there.
    assert base64.b64decode(identity["privateKey"]["inlineBytes"]) == b"[redacted]"
    assert b"BEGIN CERTIFICATE" in base64.b64decode(identity["certificateChain"]["inlineBytes"])
    clusters = [
        c["cluster"]["name"] for c in configs["ClustersConfigDump"]["dynamicActiveClusters"]
    ]
    assert "backend" in clusters
    # Admin only: a remote caller without the token is refused, an unknown proxy is 404.
    assert (await api.get("/meshes/default/dataplanes/web-1/xds", peer="10.1.2.3")).status == 403
    assert (await api.get("/meshes/default/dataplanes/nope/xds")).status == 404


async def check_insight(api: Api, regenerations: int = 1) -> None:
    reply = await api.get("/meshes/default/dataplanes+insights/web-1")
    assert reply.status == 200, reply.body
    section = reply.json["dataplaneInsight"]["mTLS"]
    assert section["issuedBackend"] == "ca-1"
    assert section["supportedBackends"] == ["ca-1"]
    assert section["certificateRegenerations"] == regenerations
    assert section["certificateExpirationTime"] > section["lastCertificateRegeneration"]


async def check_kumactl(api: Api) -> None:
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        return kumactl(
            ["inspect", "dataplane", "web-1", "--type=config-dump", "--api-server", api.base],
            stdout=out,
            stderr=err,
            environ={"KUMACTL_AUTH_TOKEN": ADMIN_TOKEN},
        )

    assert await anyio.to_thread.run_sync(run) == 0, err.getvalue()
    document = json.loads(out.getvalue())
    assert len(document["configs"]) == 5
    (secrets,) = (c for c in document["configs"] if c["@type"].endswith("SecretsConfigDump"))
    for entry in secrets["dynamicActiveSecrets"]:
        key = entry["secret"].get("tlsCertificate", {}).get("privateKey")
        assert key is None or base64.b64decode(key["inlineBytes"]) == b"[redacted]"
    # Other inspection types are refused clearly.
    err = io.StringIO()

    def unsupported() -> int:
        return kumactl(
            ["inspect", "dataplane", "web-1", "--type=stats", "--api-server", api.base],
            stdout=io.StringIO(),
            stderr=err,
        )

    assert await anyio.to_thread.run_sync(unsupported) != 0
    assert "not supported" in err.getvalue()
