"""``kuma-dp run``: get the bootstrap, run Envoy with it, stop it gracefully.

1. The Dataplane was checked before this runs (:mod:`.dataplane`); the Envoy binary is found and
   asked its version (sent to the control plane, as Kuma does).
2. The bootstrap is requested until the control plane answers (:mod:`.client`) and written into
   the config dir (a temporary one unless ``--config-dir`` is given; removed at exit).
3. Envoy runs as a child (:mod:`.envoy`); its output is passed through, each line prefixed
   with ``[envoy]``. SIGINT/SIGTERM start a drain: the readiness reporter (:mod:`.readiness`)
   answers TERMINATING at once, Envoy's health checks fail (so load balancers and HTTP
   keep-alive connections let go), kuma-dp waits ``--drain-time`` (a second signal cuts it
   short), then Envoy gets SIGTERM. kuma-dp exits with Envoy's exit status.
4. Before Envoy starts, the metrics hijacker (:mod:`.hijacker`) serves Envoy's stats (and the
   ``aggregate`` applications' metrics) on the unix socket the bootstrap request named; the
   socket is removed at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import msgspec
import yaml

import kuma
from kuma.resources import Dataplane, ZoneEgress, ZoneIngress, encode_json
from kuma.resources.accesslog_pipe import access_log_socket_name
from kuma.resources.metrics import default_socket_path

from .accesslogs import AccessLogStreamer
from .client import Bootstrap, BootstrapRefused, client_tls, fetch_bootstrap
from .envoy import EnvoyVersion, envoy_args, envoy_version, find_envoy, start_envoy
from .hijacker import MetricsHijacker, endpoints_of
from .readiness import ReadinessReporter

log = logging.getLogger("kuma.dp")

#: How long Envoy gets to exit after SIGTERM before it is killed.
KILL_AFTER = 10.0
BOOTSTRAP_FILE = "bootstrap.yaml"


class RunOptions(msgspec.Struct, kw_only=True):
    cp_address: str
    #: PEM of the CA kuma-cp's certificate must chain to (``--ca-cert-file``).
    ca_cert: str = ""
    skip_verify: bool = False
    #: The Dataplane (a ZoneIngress for ``--proxy-type ingress``) kuma-dp brings, if any.
    dataplane: Dataplane | ZoneIngress | ZoneEgress | None
    mesh: str
    name: str
    proxy_type: str = "dataplane"
    token: str = ""
    #: The absolute path the token was read from (``--dataplane-token-file``), sent so that a
    #: control plane with reloadable tokens has Envoy re-read it; empty for an inline token.
    token_path: str = ""
    binary_path: str | None = None
    config_dir: Path | None = None
    concurrency: int | None = None
    drain_time: float = 30.0
    envoy_log_level: str = "info"
    #: The port of Envoy's DNS listener (``kuma:dns``) for transparent proxying, 0: no DNS.
    dns_port: int = 15053
    #: Serve readiness from kuma-dp (``kuma:readiness``); False: Envoy's ``/ready`` as is.
    readiness: bool = True
    #: The readiness reporter's port on 127.0.0.1; 0: a free one.
    readiness_port: int = 0
    #: The providedTLS certificate and key files of the Prometheus endpoint ("": none).
    metrics_cert_path: str = ""
    metrics_key_path: str = ""


def metrics_socket_path(options: RunOptions, directory: Path) -> str:
    """Kuma's ``<socket dir>/kuma-mh-<name>-<mesh>.sock``; the socket dir is the config dir
    (as in Kuma when none is given: its temporary dir), so sidecars never share one."""
    dataplane = options.dataplane
    name = dataplane.name if dataplane else options.name
    mesh = dataplane.mesh_name if dataplane else options.mesh
    return default_socket_path(name, mesh, str(directory))


def access_log_pipe(options: RunOptions, directory: Path) -> str:
    """Kuma's ``<socket dir>/kuma-al-<name>-<mesh>.sock`` in the config dir (as the metrics
    socket), sent as ``accessLogSocketPath``, so sidecars never share one."""
    dataplane = options.dataplane
    name = dataplane.name if dataplane else options.name
    mesh = dataplane.mesh_name if dataplane else options.mesh
    return access_log_socket_name(str(directory), name, mesh)


async def start_access_log_streamer(
    options: RunOptions, directory: Path
) -> AccessLogStreamer | None:
    """kuma-dp's access-log pipe for MeshAccessLog's Tcp backends (:mod:`.accesslogs`); None
    (logged) if it cannot be created: only those logs are lost."""
    streamer = AccessLogStreamer(access_log_pipe(options, directory))
    try:
        await streamer.start()
    except OSError as exc:
        log.error("access log pipe %s: %s; Tcp access logs are not sent", streamer.path, exc)
        return None
    return streamer


def bootstrap_request(
    options: RunOptions, version: EnvoyVersion, workdir: Path, readiness_port: int = 0
) -> dict[str, Any]:
    """Kuma's BootstrapRequest (``pkg/xds/bootstrap/types/bootstrap_request.go``);
    ``readiness_port``: where kuma-dp reports readiness (0: it does not)."""
    dataplane = options.dataplane
    request: dict[str, Any] = {
        "mesh": dataplane.mesh_name if dataplane else options.mesh,
        "name": dataplane.name if dataplane else options.name,
        "proxyType": options.proxy_type,
        "dataplaneToken": options.token,
        "dataplaneResource": encode_json(dataplane).decode() if dataplane else "",
        "dnsPort": options.dns_port,
        "caCert": options.ca_cert,
        "metricsResources": {
            "socketPath": metrics_socket_path(options, workdir),
            "certPath": options.metrics_cert_path,
            "keyPath": options.metrics_key_path,
        },
        "accessLogSocketPath": access_log_pipe(options, workdir),
        "version": {
            "kumaDp": {
                "version": kuma.__version__,
                "gitTag": "",
                "gitCommit": "",
                "buildDate": "",
            },
            "envoy": {"version": version.version, "build": version.build},
        },
        "operatingSystem": sys.platform,
        "features": [],
        "workdir": str(workdir),
    }
    if readiness_port:
        request["readinessPort"] = readiness_port
    if options.token_path:
        request["dataplaneTokenPath"] = options.token_path
    return request


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (the bootstrap holds the dataplane token)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file at that path may have had wider permissions
    with open(fd, "w") as file:
        file.write(text)


def admin_port_of(bootstrap_yaml: str) -> int:
    document = yaml.safe_load(bootstrap_yaml)
    return int(document["admin"]["address"]["socketAddress"]["portValue"])


@contextlib.contextmanager
def config_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    temporary = Path(tempfile.mkdtemp(prefix="kuma-dp-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


async def run(options: RunOptions) -> int:
    """Run until Envoy exits; its exit status (0 when stopped by a signal before it started)."""
    binary = find_envoy(options.binary_path)
    version = await envoy_version(binary)
    log.info("found Envoy %s at %s", version.version, binary)
    reporter = ReadinessReporter(options.readiness_port) if options.readiness else None
    with (
        anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
        config_dir(options.config_dir) as directory,
    ):
        async with _reporting(reporter):
            request = bootstrap_request(
                options, version, directory, reporter.port if reporter is not None else 0
            )
            tls = client_tls(options.ca_cert, skip_verify=options.skip_verify)
            bootstrap = await _fetch_unless_stopped(options.cp_address, request, signals, tls)
            if bootstrap is None:
                return 0
            path = directory / BOOTSTRAP_FILE
            write_private(path, bootstrap.yaml)
            admin_port = admin_port_of(bootstrap.yaml)
            log.info("bootstrap written to %s (Envoy admin on 127.0.0.1:%d)", path, admin_port)
            if reporter is not None:
                reporter.envoy_admin_port = admin_port
            args = envoy_args(
                binary,
                path,
                drain_time=options.drain_time,
                log_level=options.envoy_log_level,
                concurrency=options.concurrency,
            )
            hijacker = MetricsHijacker(
                metrics_socket_path(options, directory),
                admin_port,
                endpoints_of(bootstrap.sidecar),
                transparent=isinstance(options.dataplane, Dataplane)
                and options.dataplane.is_transparent,
            )
            # Serving before Envoy starts: the first scrape through Envoy finds it.
            await hijacker.start()
            streamer = await start_access_log_streamer(options, directory)
            try:
                process = await start_envoy(args)
                log.info("Envoy started (pid %d)", process.pid)
                code = await _supervise(process, signals, admin_port, options.drain_time, reporter)
            finally:
                await hijacker.stop()
                if streamer is not None:
                    await streamer.stop()
            log.info("Envoy exited with status %d", code)
            return code


@contextlib.asynccontextmanager
async def _reporting(reporter: ReadinessReporter | None) -> AsyncIterator[None]:
    """The readiness reporter (if any) serves while the context is open."""
    if reporter is None:
        yield
        return
    await reporter.start()
    try:
        yield
    finally:
        await reporter.stop()


async def _fetch_unless_stopped(
    cp_address: str,
    request: dict[str, Any],
    signals: AsyncIterator[int],
    tls: ssl.SSLContext | bool,
) -> Bootstrap | None:
    """The bootstrap, or None when a signal came first. Raises BootstrapRefused."""
    fetched: list[Bootstrap] = []
    refused: list[BootstrapRefused] = []
    async with anyio.create_task_group() as tg:

        async def fetch() -> None:
            try:
                fetched.append(await fetch_bootstrap(cp_address, request, tls=tls))
            except BootstrapRefused as exc:
                refused.append(exc)
            tg.cancel_scope.cancel()

        tg.start_soon(fetch)
        async for signum in signals:
            log.info("caught %s before Envoy started: stopping", signal.Signals(signum).name)
            tg.cancel_scope.cancel()
            break
    if refused:
        raise refused[0]
    return fetched[0] if fetched else None


async def _supervise(
    process: asyncio.subprocess.Process,
    signals: AsyncIterator[int],
    admin_port: int,
    drain_time: float,
    reporter: ReadinessReporter | None = None,
) -> int:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, process, signals, admin_port, drain_time, reporter)
        assert process.stdout is not None
        await _pass_through(process.stdout)
        code = await process.wait()
        tg.cancel_scope.cancel()
    # Killed by a signal: the shell's convention, 128 + the signal number.
    return code if code >= 0 else 128 - code


async def _pass_through(output: asyncio.StreamReader) -> None:
    """Envoy's output, line by line with a prefix, until Envoy closes it (when it exits)."""
    while True:
        try:
            line = await output.readline()
        except ValueError:  # longer than the reader's limit: asyncio has dropped it
            line = b"(a line too long to pass through was dropped)\n"
        if not line:
            return
        sys.stdout.write("[envoy] " + line.decode(errors="replace"))
        sys.stdout.flush()


async def _stop_on_signal(
    process: asyncio.subprocess.Process,
    signals: AsyncIterator[int],
    admin_port: int,
    drain_time: float,
    reporter: ReadinessReporter | None = None,
) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        log.info(
            "caught %s: draining Envoy for %gs (a second signal stops it now)", name, drain_time
        )
        if reporter is not None:
            reporter.set_terminating()
        await _fail_health_checks(admin_port)
        with anyio.move_on_after(drain_time):
            async for _ in signals:
                break
        log.info("stopping Envoy")
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(KILL_AFTER):
            await process.wait()
        if process.returncode is None:
            log.warning("Envoy did not stop within %gs: killing it", KILL_AFTER)
            process.kill()
        return


async def _fail_health_checks(admin_port: int) -> None:
    """Envoy then answers health checks with 503 and closes HTTP connections as requests end
    (Kuma's drain). Best effort: an Envoy whose admin API is gone is stopped anyway."""
    url = f"http://127.0.0.1:{admin_port}/healthcheck/fail"
    try:
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.post(url) as response,
        ):
            await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("cannot fail Envoy's health checks at %s: %s", url, exc)
