"""``kuma-load zones``: the multi-zone benchmark's command line (kuma/load/zone_scenario.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .cli import cpu_sets, machine
from .mesh import MeshSpec
from .report import to_json
from .session import Options
from .zone_scenario import ZoneRun, cross_zone_changes

EXAMPLES = """\
A global kuma-cp and two zone kuma-cps (KDS over TLS, zone tokens), --proxies simulated
sidecars per zone, each zone with a registered ZoneIngress, mesh mTLS on. After both zones
converged: --changes changes of a 'target' instance in zone-2 (its --target-consumers consumers
in each zone), then --fanout-changes of a 'shared' instance (every sidecar of both zones);
latency store write -> every affected zone-1 sidecar, CPU of the three kuma-cps, KDS bytes per
change in each direction.

examples:
  kuma-load zones --proxies 20 --changes 5
  kuma-load zones --proxies 5000 --rate 200 --changes 20 --fanout-changes 3 --out results/zones
"""


def add_parser(commands: Any) -> None:
    zones = commands.add_parser(
        "zones",
        help="multi-zone: a change in zone-2 reaching zone-1's sidecars",
        description=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    zones.add_argument("--proxies", type=int, default=100, help="sidecars per zone [100]")
    zones.add_argument("--instances", type=int, default=10, help="instances per service [10]")
    zones.add_argument("--outbounds", type=int, default=5, help="random outbounds per proxy [5]")
    zones.add_argument("--target-consumers", type=int, default=50, help="per zone [50]")
    zones.add_argument("--mtls", choices=["strict", "permissive"], default="strict")
    zones.add_argument("--rate", type=float, default=200.0, help="connections/s per zone [200]")
    zones.add_argument("--workers", type=int, default=1, help="worker processes per zone [1]")
    zones.add_argument("--node", choices=["envoy", "minimal"], default="envoy")
    zones.add_argument("--changes", type=int, default=20, help="targeted changes [20]")
    zones.add_argument("--fanout-changes", type=int, default=3, help="fan-out changes [3]")
    zones.add_argument("--cp-cpus", default="0", help="CPUs of the three kuma-cps ['0'; 'none']")
    zones.add_argument("--harness-cpus", default="rest", help="CPUs of the harness [the others]")
    zones.add_argument("--cp-log-level", default="info")
    zones.add_argument("--timeout", type=float, default=600.0, help="convergence wait [600]")
    zones.add_argument("--seed", type=int, default=1)
    zones.add_argument("--out", type=Path, help="folder for results.json")
    zones.add_argument("--no-progress", action="store_true")


def options_from(args: argparse.Namespace) -> Options:
    spec = MeshSpec(
        proxies=args.proxies,
        instances=args.instances,
        outbounds=args.outbounds,
        target_consumers=args.target_consumers,
        mtls=args.mtls,
        seed=args.seed,
    )
    cp_cpus, harness_cpus = cpu_sets(args)
    return Options(
        spec=spec,
        workers=args.workers,
        rate=args.rate,
        cp_cpus=cp_cpus,
        harness_cpus=harness_cpus,
        cp_log_level=args.cp_log_level,
        node=args.node,
        timeout=args.timeout,
        progress=not args.no_progress,
        seed=args.seed,
    )


async def run_zones(args: argparse.Namespace) -> dict[str, Any]:
    run = ZoneRun(options_from(args))
    results: dict[str, Any] = {
        "command": " ".join(["kuma-load", *sys.argv[1:]]),
        "machine": machine(),
    }
    try:
        results["setup"] = await run.start()
        measured: dict[str, Any] = {"converge": await run.converge()}
        if args.changes:
            measured["cross_targeted"] = await cross_zone_changes(
                run, service=1, changes=args.changes
            )
        if args.fanout_changes:
            measured["cross_fanout"] = await cross_zone_changes(
                run, service=0, changes=args.fanout_changes, within=120.0
            )
        results["scenarios"] = measured
        results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        await run.close()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_bytes(to_json(results))
    return results
