"""The multi-zone benchmark (issue 12): a change in zone-2 reaching zone-1's sidecars.

Setup (:func:`start`): global, then each zone's kuma-cp with its Dataplanes, ZoneIngress and
sidecars (:class:`~.zone_harness.ZoneHarness`); both zones' sidecars connect at once and the
run waits until every sidecar of both zones holds exactly its zone's reference config, which
includes the other zone's ingress as an endpoint of every service (so initial convergence
already proves both ingress lists crossed global).

A cross-zone change (:func:`cross_zone_changes`) gives an instance of one service in zone-2 a
new ``rev`` tag, one change at a time: zone-2's kuma-cp updates its ingress's list, KDS carries
the changed entries to global and on to zone-1, and zone-1's kuma-cp re-assembles its
consumers. The driver predicts the new ClusterLoadAssignment version in both zones, probes it
in both zones' sidecars and times store write → receipt per sidecar (zone-1: the cross-zone
path; zone-2: the local path, for comparison). Measured per change: CPU of all three
kuma-cps, KDS bytes sent in each direction by kind (``kuma_kds_sent_bytes``). Afterwards
every sidecar of both zones must again hold exactly its reference.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from .federation import Federation, kds_sent_bytes, traffic_delta
from .mesh import Change, Plan, service_name
from .procs import ManagedProcess, free_port
from .reference import Prediction
from .scenarios import ACK_GRACE, initial_convergence
from .session import Options
from .stats import Written, counter_delta, summarize
from .zone_harness import ZoneHarness
from .zone_hops import hops
from .zone_reference import ZoneReference

ZONES = ("zone-1", "zone-2")


class ZoneRun:
    def __init__(self, options: Options) -> None:
        if not options.spec.mtls:
            # Kuma routes to other zones' ingresses only in meshes with mTLS.
            raise ValueError("a multi-zone run needs mesh mTLS (--mtls strict|permissive)")
        self.options = options
        self.federation = Federation(
            Plan(options.spec), cpus=options.cp_cpus, log_level=options.cp_log_level
        )
        self.zones: list[ZoneHarness] = []

    async def start(self) -> dict[str, Any]:
        started = time.perf_counter()
        await self.federation.start()
        notes: dict[str, Any] = {"global_start_seconds": round(time.perf_counter() - started, 2)}
        for zone in ZONES:
            env = await self.federation.zone_env(zone)
            # One progress bar is enough: the zones converge together.
            progress = self.options.progress and zone == ZONES[0]
            options = msgspec.structs.replace(self.options, cp_env=env, progress=progress)
            self.zones.append(ZoneHarness(options, zone=zone, ingress_port=free_port()))
        one, two = self.zones
        one.remote, two.remote = two.as_remote(), one.as_remote()
        for harness in self.zones:
            await harness.setup()
            notes[harness.zone] = harness.notes
        return notes

    async def converge(self) -> dict[str, Any]:
        """Both zones' sidecars connect at once; each zone's convergence as kuma-load reports
        it for one control plane, and global's CPU over the same window."""
        cpu = self.federation.cpu_seconds()
        found = await asyncio.gather(*(initial_convergence(z, idle_seconds=0) for z in self.zones))
        result: dict[str, Any] = {z.zone: r for z, r in zip(self.zones, found, strict=True)}
        result["global_cpu_seconds"] = round(self.federation.cpu_seconds() - cpu, 3)
        return result

    def kds_bytes(self) -> dict[str, dict[tuple[str, str], float]]:
        ports = {"global": self.federation.api_port, **{z.zone: z.api_port for z in self.zones}}
        return {name: kds_sent_bytes(port) for name, port in ports.items()}

    def output(self, zone: ZoneHarness | None) -> str:
        """What ``zone``'s kuma-cp (None: global) printed, as far as it is kept."""
        process = zone.cp if zone is not None else self.federation.global_cp
        return process.output() if isinstance(process, ManagedProcess) else ""

    def cpu(self) -> dict[str, float]:
        return {"global": self.federation.cpu_seconds(), **{z.zone: z.cp_cpu() for z in self.zones}}

    async def close(self) -> None:
        for harness in self.zones:
            await harness.close()
        self.federation.close()


def _remote_prediction(receiver: ZoneHarness, change: Change) -> Prediction:
    reference = receiver.reference
    if not isinstance(reference, ZoneReference):
        raise ValueError("a multi-zone run checks exact configs (no --no-exact)")
    return reference.apply_remote(change)


async def cross_zone_changes(
    run: ZoneRun, *, service: int, changes: int, within: float = 60.0
) -> dict[str, Any]:
    """``changes`` changes, one at a time, of instances of ``service`` in zone-2; each waited
    for at most ``within`` seconds, as is the final check."""
    local, remote = run.zones[1], run.zones[0]
    instances = local.plan.instances_of(service)
    pairs: dict[str, list[float]] = {"remote": [], "local": []}
    lasts: dict[str, list[float]] = {"remote": [], "local": []}
    missing = {"remote": 0, "local": 0}
    affected = {"remote": 0, "local": 0}
    bytes_before = await asyncio.to_thread(run.kds_bytes)
    cpu_before = run.cpu()
    counters_before = (await remote.status())["counters"]
    started = time.monotonic()
    written_ats: list[float] = []
    first_receipts: list[float | None] = []
    for k in range(changes):
        proxy = instances[k % len(instances)]
        document, here = local.predict(proxy)
        there = _remote_prediction(remote, Change(proxy, local.revisions.rev(proxy)))
        [remote_probe] = await remote.register([there])
        [local_probe] = await local.register([here])
        written_at = await local.write(document)
        written_ats.append(written_at)
        waits = [
            (side, harness, Written(probe, p.type_index, p.name, p.affected, written_at))
            for side, harness, probe, p in (
                ("remote", remote, remote_probe, there),
                ("local", local, local_probe, here),
            )
        ]
        results = await asyncio.gather(*(h.wait_delivered([w], within) for _, h, w in waits))
        for (side, _, written), (found, lost) in zip(waits, results, strict=True):
            values = [v for _, v in found]
            pairs[side].extend(values)
            missing[side] += lost
            affected[side] += len(written.affected)
            if values:
                lasts[side].append(max(values))
            if side == "remote":
                first_receipts.append(written_at + min(values) if values else None)
        await asyncio.sleep(ACK_GRACE)
    elapsed = time.monotonic() - started
    cpu_after = run.cpu()
    bytes_after = await asyncio.to_thread(run.kds_bytes)
    traffic = counter_delta(counters_before, (await remote.status())["counters"])
    kds = {
        f"{sender}_to_{peer}": sent
        for sender in bytes_after
        for peer, sent in traffic_delta(bytes_before[sender], bytes_after[sender]).items()
    }
    return {
        "changes": changes,
        "service": service_name(service),
        "zone_1_affected_per_change": round(affected["remote"] / max(1, changes), 1),
        "zone_2_affected_per_change": round(affected["local"] / max(1, changes), 1),
        "zone_1_latency": summarize(pairs["remote"]),
        "zone_1_last_sidecar": summarize(lasts["remote"]),
        "zone_1_last_sidecar_each_ms": [round(v * 1000, 1) for v in lasts["remote"]],
        "zone_1_undelivered": missing["remote"],
        "zone_2_latency": summarize(pairs["local"]),
        "zone_2_last_sidecar": summarize(lasts["local"]),
        "zone_2_undelivered": missing["local"],
        "cpu_ms_per_change": {
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / max(1, changes), 1)
            for name in cpu_after
        },
        "kds_bytes_per_change": {
            link: {kind: round(n / max(1, changes)) for kind, n in kinds.items()}
            for link, kinds in sorted(kds.items())
        },
        "zone_1_xds_bytes_per_change": round(traffic.get("bytes", 0) / max(1, changes)),
        "window_seconds": round(elapsed, 2),
        "zone_1_hops_median_ms": hops(
            written_ats,
            first_receipts,
            zone_2=run.output(local),
            global_=run.output(None),
            zone_1=run.output(remote),
        ),
        "verify": await verify(run, within),
    }


async def verify(run: ZoneRun, within: float) -> dict[str, Any]:
    """Every sidecar of both zones holds exactly its zone's reference again."""
    out: dict[str, Any] = {}
    for harness in run.zones:
        await harness.push_expected(range(harness.count))
        status = await harness.wait_converged(f"verify {harness.zone}", within=within)
        mismatches = (
            sum(len(p) for p in await harness.pool.all("mismatches")) if harness.pool else 0
        )
        out[harness.zone] = {"ok": status["ok"], "not_converged": mismatches}
    return out
