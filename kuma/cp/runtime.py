"""The control plane's process runtime: the store, the engine, the xDS server, the REST API.

One task group owns everything; cancelling it (SIGINT/SIGTERM) unwinds the components, each
closing what it owns (the ADS listener, open streams, the API listener, the store's watches).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

import kuma
from kuma.api import ApiSettings, serve_api
from kuma.api.config_dump import config_dump_routes
from kuma.api.tokens import token_routes
from kuma.bootstrap import GeneratorParams, bootstrap_protocol
from kuma.gui import Gui
from kuma.insights import Insights, SupportsInstances, dataplane_exists, insight_store_for
from kuma.inspect import served_config_routes
from kuma.metrics import InstrumentedStore, Metrics, metrics_routes
from kuma.metrics.kds import KdsTraffic
from kuma.mtls.insight import report_certificates
from kuma.mtls.service import MtlsService
from kuma.multizone import Authoring
from kuma.store import ResourceEvent, Store, Synced, open_store
from kuma.xds import types
from kuma.xds.composite import CompositeSource
from kuma.xds.engine import Engine
from kuma.xds.engine.available_services import AvailableServicesIndex
from kuma.xds.engine.handlers import default_handlers
from kuma.xds.engine.invalidation import Invalidation
from kuma.xds.server import serve as serve_ads
from kuma.xds.server.observer import StreamObserver
from kuma.xds.server.tally import TalliedObserverGroup

from .authn import build_authentication
from .change_log import ChangeLog
from .config import CpConfig, parse_duration
from .defaults import MeshDefaults, ensure_default_mesh
from .ingress_services import IngressServicesWriter
from .kds import run_kds
from .logs import fields
from .mads import serve_mads
from .orphans import OrphanCollector
from .registration import Registrar
from .tls import prepare_tls
from .vips import VipAllocator

log = logging.getLogger("kuma.cp")

#: Seconds a proxy stays assembled after its last ADS stream closed: a proxy that reconnects
#: within them (a network blip, every sidecar at once after a load balancer restart) is not
#: assembled again (the engine's assembly was ~10 % of kuma-cp's CPU per reconnecting proxy,
#: benchmarks/RESULTS.md "Mass reconnect: whose wait"). Long enough for a storm of thousands
#: to be set up (tens of seconds), short enough that a departed proxy's config soon goes.
RECONNECT_LINGER = 60.0


async def _follow_changes(
    store: Store, changes: ChangeLog, *handlers: Callable[[ResourceEvent], None]
) -> None:
    """Log every change of the store after its initial snapshot (an operator's audit trail,
    :mod:`.change_log`), and hand it to ``handlers`` (metrics, insights): one watch serves
    them all."""
    async with store.watch() as events:
        synced = False
        async for item in events:
            if isinstance(item, Synced):
                synced = True
            elif synced:
                changes.add(item)
                for handler in handlers:
                    handler(item)


def _touch_services(engine: Engine, mesh: str, services: set[str]) -> None:
    invalidation = Invalidation()
    invalidation.touch_services(mesh, services)
    engine.invalidate(invalidation)


async def run_control_plane(
    config: CpConfig, *, on_ready: Callable[[], Awaitable[Any]] | None = None
) -> None:
    """Run until cancelled."""
    store_type = config.store.type
    async with open_store(store_type, config.store.options_for(store_type)) as store:
        log.info("store opened", extra=fields(store=store.name))
        # A zone connected to a global gets its meshes (and their default policies) from
        # global, as in Kuma (pkg/defaults: no defaults in a federated zone).
        make_defaults = not config.is_federated_zone
        if make_defaults and not config.defaults.skip_mesh_creation:
            await ensure_default_mesh(store)
        metrics = Metrics()
        metrics.watch_problems(store)
        # The calls of the API and of registration are timed and counted (kuma/metrics/store.py).
        instrumented = InstrumentedStore(store, metrics)
        # Mesh mTLS: CAs, workload certificates (issued and rotated in memory), SDS.
        # A federated zone's mesh CAs and token signing keys are global's (they come over KDS):
        # it creates none of its own.
        mtls = MtlsService(store, create_cas=not config.is_federated_zone)
        engine = Engine(
            default_admin_port=config.bootstrap_server.params.admin_port,
            on_batch=metrics.on_batch,
            identity_ready=mtls.identity_ready,
            # A zone serves its Dataplanes with kuma.io/zone (kuma/multizone/zone_tag.py).
            handlers=default_handlers(zone=config.zone_name),
            linger=RECONNECT_LINGER,
        )
        mtls.on_readiness = partial(_touch_services, engine)
        # The zone's ZoneIngresses list its services (kuma/cp/ingress_services.py); a global has
        # no Dataplanes of its own to list.
        ingress_services = None
        if not config.is_global:
            ingress_services = IngressServicesWriter(
                store,
                AvailableServicesIndex(config.zone_name),
                max_delay=parse_duration(config.multizone.zone.ingress_update_interval),
            )
            engine.inputs.add_observer(ingress_services.index)
        # Insights live beside the resource store, never in it: see kuma/insights/store.py.
        insights = Insights(
            insight_store_for(store),
            flush_interval=config.status_flush_interval,
            observer=metrics,
            dataplane_exists=partial(dataplane_exists, store),
        )
        # Each proxy's certificate goes into its insight (Kuma's mTLS section).
        report_certificates(insights.tracker, mtls)
        # The GUI follows the store itself and hears the streams and the propagation times.
        gui = Gui(store, insights) if config.api_server.gui.enabled else None
        observers: list[StreamObserver] = [insights.tracker, metrics]
        if gui is not None:
            observers.append(gui.streams)
            metrics.on_propagation = gui.on_propagation
        # Per-response hooks delivered once per loop turn (kuma/xds/server/tally.py).
        observer = TalliedObserverGroup(observers)
        # Registered Dataplanes whose proxy has had no stream anywhere for long are deleted
        # (kuma/cp/orphans.py); its view of live instances also guards registration.
        orphans = OrphanCollector(
            instrumented,
            insights.current,
            insights.instance_id,
            age=config.dataplane_cleanup_age,
            instances=store.instances() if isinstance(store, SupportsInstances) else None,
            enabled=not config.is_global,
        )
        # Sidecars' own Dataplanes: registered when their stream opens (kuma/cp/registration.py).
        registrar = Registrar(
            instrumented,
            config.deregistration_delay,
            connected_elsewhere=orphans.connected_elsewhere,
            zone=config.zone_name,
        )
        # Dataplane tokens, on unless dpServer.authn.dpProxy.type is none (kuma/cp/authn.py).
        if config.dp_server.authn.dp_proxy.type == "none":
            log.warning(
                "dpServer.authn.dpProxy.type is none: any host that reaches the dp server can "
                "register a Dataplane and read proxy configuration (use only in a lab)"
            )
        authn = build_authentication(
            store,
            config.dp_server.authn,
            on_refused=metrics.on_stream_refused,
            on_closed=metrics.on_stream_deauthenticated,
            federated=config.is_federated_zone,
            zone=config.zone_name,
        )
        # TLS on the dp server and the HTTPS API (kuma/cp/tls.py).
        tls = await prepare_tls(store, config)
        params = config.bootstrap_server.params
        bootstrap = GeneratorParams(
            default_admin_port=params.admin_port,
            xds_transport=params.xds_transport,
            require_token=config.dp_server.authn.dp_proxy.type != "none",
            tls=tls.dp is not None,
            trusted_ca=tls.dp_trusted,
            certificate_names=tls.dp_names,
            reloadable_tokens=config.dp_server.authn.enable_reloadable_tokens,
        )
        async with (
            bootstrap_protocol(store, bootstrap) as bootstrap_http,
            anyio.create_task_group() as tg,
        ):
            changes = ChangeLog()
            tg.start_soon(changes.run)
            tg.start_soon(
                _follow_changes, store, changes, insights.on_store_event, metrics.on_store_event
            )
            tg.start_soon(engine.run, store)
            # Transparent proxies' VIPs: allocated once, kept in the store (kuma/cp/vips.py).
            tg.start_soon(VipAllocator(store, zone=config.zone_name).run)
            if ingress_services is not None:
                tg.start_soon(ingress_services.run)
            tg.start_soon(insights.run)
            tg.start_soon(orphans.run)
            tg.start_soon(mtls.run)
            # Every mesh created from now on gets Kuma's default policies (kuma/cp/defaults.py).
            if make_defaults:
                tg.start_soon(MeshDefaults(store).run)
            await tg.start(registrar.run)
            await tg.start(authn.run)
            # Multi-zone sync: global serves KDS, a federated zone follows global (kuma/kds).
            kds_port = await tg.start(
                partial(
                    run_kds,
                    instance_id=insights.instance_id,
                    live=orphans.live_instances,
                    insights=insights,
                    traffic=KdsTraffic(metrics.registry),
                ),
                config,
                store,
                authn,
            )
            await engine.wait_synced()
            # Prometheus' kuma_sd finds every sidecar's metrics here (kuma/mads); not on
            # global, which has no Dataplanes (as Kuma).
            mads_port = None if config.is_global else await tg.start(serve_mads, store, config)
            # One port for ADS and kuma-dp's POST /bootstrap, as in Kuma (kuma/xds/server/demux.py).
            serve_dp = partial(
                serve_ads,
                lifecycle=registrar,
                authenticator=authn.authenticator,
                http1=bootstrap_http,
                ssl=tls.dp,
            )
            # The streams ask one source: the engine's resources, SDS from the SecretSource
            # (kuma/mtls) and the engine's builtin gateway certificates (kuma/xds/gateway);
            # /meshes/{mesh}/dataplanes/{name}/_config shows what it serves.
            source = CompositeSource(engine, {types.SECRET: mtls.source}, shared={types.SECRET})
            ads_port = await tg.start(
                serve_dp, source, config.dp_server.interface, config.dp_server.port, observer
            )
            extra_routes = [
                *metrics_routes(metrics),
                *served_config_routes(store, source),
                *token_routes(instrumented, authn.issuer),
                *config_dump_routes(instrumented, source),
            ]
            if gui is not None:
                await tg.start(gui.run)
                extra_routes += gui.routes()
            api = config.api_server
            api_settings = ApiSettings(
                interface=api.http.interface,
                port=api.http.port,
                admin_token=api.auth.admin_token,
                max_request_bytes=api.max_request_bytes,
                instance_id=insights.instance_id,
                authoring=Authoring(
                    mode=config.mode,
                    zone=config.zone_name,
                    federated=config.is_federated_zone,
                    origin_label_validation=(
                        not config.multizone.zone.disable_origin_label_validation
                    ),
                ),
            )
            https = (api.https.interface, api.https.port, tls.api) if tls.api else None
            api_port, https_port = await tg.start(
                partial(serve_api, https=https),
                instrumented,
                api_settings,
                insights,
                extra_routes,
            )
            log.info(
                "kuma-cp is ready",
                extra=fields(
                    version=kuma.__version__,
                    mode=config.mode,
                    zone=config.zone_name or None,
                    store=store.name,
                    dp_port=ads_port,
                    api_port=api_port,
                    https_port=https_port or None,
                    dp_tls=tls.dp is not None,
                    kds_port=kds_port,
                    mads_port=mads_port,
                ),
            )
            if on_ready is not None:
                await on_ready()
