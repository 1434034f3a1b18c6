"""KDS between real kuma-cp processes on loopback: a global and a federated zone, each with
its own directory store, TLS with global's certificate and a zone token.

One test walks the whole life of a zone (it costs two control planes and a restart, so the
behaviours share it): global's Mesh and MeshTimeout reach the zone and are served there; the
zone's Dataplane reaches global under its hashed name and labels; deletions travel both ways;
with global killed the zone serves a local change at once; global restarted, syncing resumes
and only the differences travel. Global shows the zone online while it is connected (a killed
global's connection closed once global is back), cut off while disabled, and offline once it
stops. Secrets: the zone holds global's builtin CA of a mesh with mTLS (byte-equal) and accepts
a dataplane token issued on global; it makes no CA and no signing key of its own. A second test
refuses a zone with another zone's token.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

import kuma
from kuma.cli.inspect_zones import ZONE_HEADERS
from kuma.insights import is_online
from kuma.kds.mapping import hashed_name
from kuma.processes import ManagedProcess, free_port
from tests.cli.helpers import LOOPBACK, Kumactl
from tests.fixtures import ads_stream
from tests.fixtures.envoy import eventually as wait_for
from tests.fixtures.processes import kuma_cp

MESH = """\
type: Mesh
name: demo
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
"""
CA_CERT = "demo.ca-builtin-cert-ca-1"
CA_KEY = "demo.ca-builtin-key-ca-1"
WEB_03 = {
    "type": "Dataplane",
    "mesh": "demo",
    "name": "web-03",
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 18082, "servicePort": 8080, "tags": {"kuma.io/service": "web-03"}}],
    },
}
TIMEOUT = """\
type: MeshTimeout
mesh: default
name: slow-inbound
spec:
  targetRef:
    kind: MeshSubset
    tags:
      kuma.io/zone: zone-1
  from:
  - targetRef:
      kind: Mesh
    default:
      connectionTimeout: 17s
"""


def dataplane(name: str, port: int) -> str:
    return f"""\
type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: {port}
    servicePort: 8080
    tags:
      kuma.io/service: {name}
"""


def eventually(check: Callable[[], bool], what: str) -> None:
    # Two control planes and KDS between them: a longer deadline than the fixture's default.
    wait_for(check, what, timeout=30.0)


@contextmanager
def control_plane(env: dict[str, str]) -> Iterator[tuple[ManagedProcess, Kumactl, str]]:
    process = kuma_cp(None, env={**LOOPBACK, **env})
    try:
        line = process.wait_for_line("kuma-cp is ready")
        port = line.split("api_port=")[1].split()[0]
        url = f"http://127.0.0.1:{port}"
        yield process, Kumactl(url), url
    finally:
        process.stop()


def global_env(root: Path, kds_port: int) -> dict[str, str]:
    return {
        "KUMA_MODE": "global",
        "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT": str(kds_port),
        "KUMA_STORE_TYPE": "directory",
        "KUMA_STORE_DIRECTORY_PATH": str(root / "global-store"),
        "KUMA_GENERAL_WORK_DIR": str(root / "global-work"),
        # Zone insights' counters written every second (Kuma's default: 10 s).
        "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_INSIGHT_FLUSH_INTERVAL": "1s",
    }


def zone_env(root: Path, zone: str, kds_port: int, token: str) -> dict[str, str]:
    token_file = root / f"{zone}.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    return {
        "KUMA_MODE": "zone",
        "KUMA_MULTIZONE_ZONE_NAME": zone,
        "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": f"grpcs://127.0.0.1:{kds_port}",
        "KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE": str(root / "global-work" / "kuma-cp.crt"),
        "KUMA_MULTIZONE_ZONE_KDS_ZONE_TOKEN_FILE": str(token_file),
        "KUMA_STORE_TYPE": "directory",
        "KUMA_STORE_DIRECTORY_PATH": str(root / f"{zone}-store"),
        # Proxies' insights flushed (and so sent up to global) every second (default: 10 s).
        "KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL": "1s",
    }


def has(kumactl: Kumactl, *argv: str, text: str) -> Callable[[], bool]:
    def check() -> bool:
        result = kumactl(*argv)
        return result.code == 0 and text in result.out

    return check


def lacks(kumactl: Kumactl, *argv: str, text: str) -> Callable[[], bool]:
    def check() -> bool:
        result = kumactl(*argv)
        return result.code == 0 and text not in result.out

    return check


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url) as reply:
        document: dict[str, Any] = json.load(reply)
    return document


def served_config(url: str, name: str) -> str:
    with urllib.request.urlopen(f"{url}/meshes/default/dataplanes/{name}/_config") as reply:
        return json.dumps(json.load(reply))


def test_a_zone_follows_global_and_survives_its_restart(tmp_path: Path) -> None:
    kds_port = free_port()
    for folder in ("global-store", "global-work", "zone-1-store"):
        (tmp_path / folder).mkdir()
    timeout_on_zone = hashed_name("default", "slow-inbound")
    web_on_global = hashed_name("default", "web-01", "zone-1")
    with ExitStack() as first_global:
        glob, on_global, global_url = first_global.enter_context(
            control_plane(global_env(tmp_path, kds_port))
        )
        on_global.ok("apply", "-f", "-", stdin=MESH)
        on_global.ok("apply", "-f", "-", stdin=TIMEOUT)
        token = on_global.ok("generate", "zone-token", "--zone", "zone-1", "--valid-for", "1h")
        env = zone_env(tmp_path, "zone-1", kds_port, token.strip())
        with control_plane(env) as (zone, on_zone, zone_url):
            # Global to zone: the meshes and the policy, with Kuma's labels and hashed name.
            eventually(has(on_zone, "get", "meshes", text="demo"), "mesh demo on the zone")
            # Global records the zone: its Zone, made on the first connection, and the
            # connection, online, with the zone's version and store.
            eventually(lambda: zone_row(on_global)["STATUS"] == "Online", "zone-1 online on global")
            assert on_global.ok("get", "zones").splitlines()[1].split()[0] == "zone-1"
            eventually(
                lambda: zone_row(on_global)["ZONE-CP VERSION"] == kuma.__version__,
                "zone-1's version on global",
            )
            assert zone_row(on_global)["BACKEND"] == "directory"
            # The mesh's builtin CA is global's, byte for byte (the zone issues from it); the
            # zone makes none (and no token signing keys) of its own.
            eventually(
                lambda: None not in (secret(zone_url, CA_CERT), secret(zone_url, CA_KEY)),
                "global's CA on the zone",
            )
            for name in (CA_CERT, CA_KEY):
                assert secret(zone_url, name) == secret(global_url, name)
            assert "CA created" in glob.output()
            # On the zone's disk the CA key, as every secret, is readable by its owner only.
            key_files = [
                path
                for path in (tmp_path / "zone-1-store").rglob("*")
                # Dot-files are the store's temporaries (renamed away at any moment).
                if not path.name.startswith(".") and path.is_file() and CA_KEY in path.read_text()
            ]
            assert key_files
            assert all(path.stat().st_mode & 0o077 == 0 for path in key_files)
            eventually(
                has(on_zone, "get", "meshtimeouts", "-m", "default", text=timeout_on_zone),
                "the MeshTimeout on the zone",
            )
            shown = on_zone.ok("get", "meshtimeout", timeout_on_zone, "-m", "default", "-o", "yaml")
            assert "kuma.io/origin: global" in shown
            assert "connectionTimeout: 17s" in shown

            # Zone to global: the Dataplane, hashed and labelled; and the zone serves it with
            # global's policy (the inbound cluster's connect timeout).
            on_zone.ok("apply", "-f", "-", stdin=dataplane("web-01", 18080))
            eventually(has(on_global, "get", "dataplanes", text=web_on_global), "web-01 on global")
            shown = on_global.ok("get", "dataplane", web_on_global, "-m", "default", "-o", "yaml")
            for label in (
                "kuma.io/zone: zone-1",
                "kuma.io/origin: zone",
                "kuma.io/display-name: web-01",
            ):
                assert label in shown
            eventually(
                lambda: '"17s"' in served_config(zone_url, "web-01"),
                "the zone serving global's MeshTimeout",
            )

            # Deletions travel both ways.
            on_global.ok("delete", "meshtimeout", "slow-inbound", "-m", "default")
            eventually(
                lacks(on_zone, "get", "meshtimeouts", "-m", "default", text=timeout_on_zone),
                "the MeshTimeout gone from the zone",
            )
            on_zone.ok("delete", "dataplane", "web-01", "-m", "default")
            eventually(
                lacks(on_global, "get", "dataplanes", text=web_on_global), "web-01 gone on global"
            )
            on_global.ok("apply", "-f", "-", stdin=TIMEOUT)
            eventually(
                has(on_zone, "get", "meshtimeouts", "-m", "default", text=timeout_on_zone),
                "the MeshTimeout back on the zone",
            )

            # Global dies: the zone serves a local change at once, from what it has.
            glob.signal(signal.SIGKILL)
            glob.wait()
            first_global.close()
            zone.wait_for_line("KDS: connection to global")
            on_zone.ok("apply", "-f", "-", stdin=dataplane("web-02", 18081))
            eventually(
                lambda: '"17s"' in served_config(zone_url, "web-02"),
                "the zone serving web-02 without global",
            )
            received = zone.count("KDS: global sent")

            # Global back (same store, same port): the zone reconnects; only what changed
            # meanwhile travels: web-02 up, nothing down (global's state did not change).
            with control_plane(global_env(tmp_path, kds_port)) as (glob, on_global, global_url):
                web_02 = hashed_name("default", "web-02", "zone-1")
                eventually(has(on_global, "get", "dataplanes", text=web_02), "web-02 on global")
                assert glob.count("KDS: zone zone-1 sent 1 Dataplane") == 1, glob.output()
                assert glob.count("KDS: zone zone-1 sent") == 1, glob.output()
                assert "KDS: following zone zone-1 (holding 0 resources)" in glob.output()
                assert zone.count("KDS: global sent") == received, zone.output()

                # A dataplane token issued on global is accepted by the zone: it checks it
                # with the signing key global sent (it has none of its own). One signed with
                # another key of the same kid is refused.
                token = on_global.ok(
                    "generate", "dataplane-token", "--mesh", "demo", "--name", "web-03"
                ).strip()
                other_key = tmp_path / "other.key"
                other_key.write_text(on_global.ok("generate", "signing-key"))
                offline = ["--signing-key-path", str(other_key), "--kid", "1"]
                forged = on_global.ok(
                    "generate", "dataplane-token", "--mesh", "demo", "--name", "web-03", *offline
                ).strip()
                # While web-03's stream is open, global shows it Online: its insight went up
                # with the zone's next flush (kuma/kds/insight_sync.py).
                web_03 = hashed_name("demo", "web-03", "zone-1")
                inspected: list[str] = []

                async def online_on_global() -> None:
                    def online() -> bool:
                        overview = get_json(f"{global_url}/meshes/demo/dataplanes+insights")
                        return any(
                            item["name"] == web_03 and is_online(item["dataplaneInsight"])
                            for item in overview["items"]
                        )

                    for _ in range(50):
                        if await anyio.to_thread.run_sync(online):
                            shown = partial(on_global.ok, "inspect", "dataplanes", "-m", "demo")
                            inspected.append(await anyio.to_thread.run_sync(shown))
                            return
                        await anyio.sleep(0.2)

                outcomes = [
                    anyio.run(
                        partial(ads_stream.open_stream, hold=hold),
                        ready_port(zone, "dp_port"),
                        zone_ca(zone),
                        WEB_03,
                        {"authorization": presented},
                    )
                    for presented, hold in ((forged, None), (token, online_on_global))
                ]
                assert outcomes[0][0] == "refused", outcomes[0]
                assert outcomes[1][0] == "ok", outcomes[1]
                assert inspected, "web-03 never shown Online on global while connected"
                (row,) = [line for line in inspected[0].splitlines() if web_03 in line]
                assert "Online" in row.split(), inspected
                assert token not in zone.output()
                for made_here in (
                    "CA created",
                    "created the dataplane-token",
                    "created the zone-token",
                ):
                    assert made_here not in zone.output()

                # The killed global's subscription was closed when global came back (not left
                # online forever); the new one is online. The zone stops: global shows it
                # offline.
                eventually(lambda: zone_row(on_global)["STATUS"] == "Online", "zone-1 online again")
                subscriptions = get_json(f"{global_url}/zones/zone-1/_overview")["zoneInsight"][
                    "subscriptions"
                ]
                assert len(subscriptions) == 2, subscriptions
                assert "disconnectTime" in subscriptions[0], subscriptions
                assert "disconnectTime" not in subscriptions[1], subscriptions

                # What global sent is counted, per type in the insight. The new subscription
                # is written at connect with no ``stat`` yet (an empty map is omitted), and
                # TOTAL UPDATES sums every subscription, the closed one's too: wait for the
                # new subscription's own counts, not for the table's sum.
                def mesh_acknowledged() -> bool:
                    stats = get_json(f"{global_url}/zones/zone-1/_overview")["zoneInsight"][
                        "subscriptions"
                    ][1]["status"]["stat"]
                    return bool(stats["Mesh"]["responsesAcknowledged"] >= 1)

                eventually(mesh_acknowledged, "zone-1's new subscription counts Mesh acks")
                assert zone_row(on_global)["TOTAL UPDATES"] not in ("", "0")

                # Disabled on global: its connection is cut and refused until enabled again.
                disabled = "type: Zone\nname: zone-1\nenabled: false\n"
                on_global.ok("apply", "-f", "-", stdin=disabled)
                eventually(lambda: zone_row(on_global)["STATUS"] == "Offline", "zone-1 cut off")
                zone.wait_for_line("PERMISSION_DENIED: zone zone-1 is disabled")
                on_global.ok("apply", "-f", "-", stdin=disabled.replace("false", "true"))
                eventually(
                    lambda: zone_row(on_global)["STATUS"] == "Online", "zone-1 enabled again"
                )
                zone.stop()
                eventually(lambda: zone_row(on_global)["STATUS"] == "Offline", "zone-1 offline")


def zone_row(kumactl: Kumactl) -> dict[str, str]:
    """zone-1's row of ``kumactl inspect zones``, by column (cells cut at the header's
    column starts: a cell may be empty)."""
    header, *lines = kumactl.ok("inspect", "zones").splitlines()
    names = ZONE_HEADERS
    starts = [header.index(name) for name in names]
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        if cells[0] == "zone-1":
            return dict(zip(names, cells, strict=True))
    return {"STATUS": "missing"}


def secret(url: str, name: str) -> str | None:
    try:
        return str(get_json(f"{url}/meshes/demo/secrets/{name}")["data"])
    except urllib.error.HTTPError:
        return None


def zone_ca(process: ManagedProcess) -> str:
    assert process.work_dir is not None
    return (process.work_dir / "kuma-cp.crt").read_text()


def ready_port(process: ManagedProcess, name: str) -> int:
    return int(process.wait_for_line("kuma-cp is ready").split(f"{name}=")[1].split()[0])


def test_a_zone_with_another_zones_token_is_refused(tmp_path: Path) -> None:
    kds_port = free_port()
    for folder in ("global-store", "global-work", "zone-2-store"):
        (tmp_path / folder).mkdir()
    with control_plane(global_env(tmp_path, kds_port)) as (glob, on_global, _):
        token = on_global.ok("generate", "zone-token", "--zone", "zone-1", "--valid-for", "1h")
        with control_plane(zone_env(tmp_path, "zone-2", kds_port, token.strip())) as (zone, _, _):
            reason = "the zone token is for zone 'zone-1', the stream is zone 'zone-2'"
            line = zone.wait_for_line("KDS: connection to global")
            assert f"UNAUTHENTICATED: zone zone-2: {reason}" in line
            assert reason in glob.wait_for_line("refusing the KDS stream of zone zone-2")
            assert token.strip() not in glob.output() + zone.output()
            assert "KDS: created" not in zone.output()
