"""kuma-load: load-test a delta-xDS control plane with simulated Envoy sidecars.

Every run writes a synthetic mesh into a store, starts the control plane under test (kuma-cp by
default, pinned to CPU 0 with the harness on the others), connects the sidecars from worker
processes, waits until every sidecar holds exactly what the control plane should serve, then
runs the chosen scenarios in order and reports JSON, a table and PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import rotation, scenarios
from .mesh import MeshSpec
from .report import plots, table, to_json
from .session import Harness, Options

SCENARIOS = ("targeted", "fanout", "policy", "churn", "slow", "reconnect", "restart", "rotation")
#: ``all``: slow sidecars would slow every other scenario down, so ``slow`` runs on its own.
ALL = ("targeted", "fanout", "churn", "reconnect", "restart")
EPILOG = """\
scenarios (initial convergence always runs first, then these in the order given):
  targeted   one Dataplane of service 'target' changes; --target-consumers proxies affected
  fanout     an instance of 'shared' changes; every proxy is affected (--fan-in)
  policy     a MeshTimeout selecting --policy-selects proxies (a tag only they carry) is
             written --policy-changes times: only they are re-assembled
  churn      --churn-rate changes/s for --churn-seconds
  slow       fan-out with --slow-fraction (0.1) sidecars reading each response --slow-delay
             late, latency of fast and slow ones apart (they are slow for the whole run)
  reconnect  every sidecar drops its connection and reconnects with initial_resource_versions
  restart    kuma-cp is stopped and started again with everyone connected
  rotation   (--mtls) wait for every workload certificate to be rotated (set a short
             --mtls-expiration): its spread, CP CPU, targeted changes during the wave
  all        all of the above except policy, slow and rotation

examples:
  kuma-load run --proxies 200 targeted
  kuma-load run --proxies 10000 --instances 10 --rate 400 all --out results/10k
  kuma-load run --proxies 1000 targeted churn --compare-baseline
  kuma-load run --proxies 1000 --mtls strict --mtls-expiration 2m targeted rotation
  kuma-load run --proxies 10000 --default-policies targeted fanout policy
  kuma-load run --cp external --target 127.0.0.1:5678 --store directory --location /srv/kuma
"""


def _cpus(text: str) -> set[int] | None:
    return None if text in ("", "none") else {int(c) for c in text.split(",")}


def cpu_sets(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None]:
    """The control plane's CPUs (``--cp-cpus``) and the harness's (``--harness-cpus``;
    ``rest``: every CPU the control plane does not have)."""
    cp_cpus = _cpus(args.cp_cpus)
    if args.harness_cpus == "rest":
        return cp_cpus, (os.sched_getaffinity(0) - (cp_cpus or set())) or None
    return cp_cpus, _cpus(args.harness_cpus)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuma-load",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run scenarios",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=" ".join([*SCENARIOS, "all"]))
    mesh = run.add_argument_group("mesh")
    mesh.add_argument("--proxies", type=int, default=100, help="sidecars (Dataplanes) [100]")
    mesh.add_argument("--instances", type=int, default=10, help="instances per service [10]")
    mesh.add_argument("--inbounds", type=int, default=1, help="inbounds per proxy [1]")
    mesh.add_argument("--outbounds", type=int, default=5, help="random outbounds per proxy [5]")
    mesh.add_argument("--no-fan-in", action="store_true", help="no proxy calls 'shared'")
    mesh.add_argument("--target-consumers", type=int, default=50, help="callers of 'target' [50]")
    mesh.add_argument("--transparent", type=float, default=0.0, help="transparent fraction [0]")
    mesh.add_argument(
        "--reachable-all",
        action="store_true",
        help="transparent proxies reach every service (no reachableServices)",
    )
    mesh.add_argument("--mesh", default="default", help="mesh name [default]")
    mesh.add_argument(
        "--mtls",
        choices=["off", "strict", "permissive"],
        default="off",
        help="mesh mTLS (builtin ECDSA P-256 CA, allow-all MeshTrafficPermission); the "
        "sidecars then follow SDS and converge only holding their certificates [off]",
    )
    mesh.add_argument(
        "--mtls-expiration",
        default="",
        help="workload certificate lifetime (dpCert.rotation.expiration, e.g. 5m) [Kuma's 24h]",
    )
    mesh.add_argument(
        "--default-policies",
        action="store_true",
        help="Kuma's default policies in the mesh, as kuma-cp creates them with a new mesh "
        "(a mesh written before kuma-cp starts has none)",
    )
    mesh.add_argument(
        "--fault-from",
        default="",
        metavar="SERVICE",
        help="a MeshFaultInjection on 'target' naming this client service (abort at 0%%): "
        "the mesh's sidecars then send their tags (x-kuma-tags), one outbound listener each",
    )
    mesh.add_argument(
        "--every-policy",
        action="store_true",
        help="one mesh-wide policy of every kind that shapes a sidecar (MeshAccessLog, "
        "MeshFaultInjection, MeshRateLimit, MeshHealthCheck, MeshLoadBalancingStrategy) and a "
        "Prometheus metrics backend on the Mesh: the features switched on, traffic unchanged",
    )
    mesh.add_argument("--seed", type=int, default=1)
    cp = run.add_argument_group("control plane and store")
    cp.add_argument(
        "--cp",
        choices=["kuma", "baseline", "external"],
        default="kuma",
        help="start kuma-cp, start the snapshot baseline, or use --target [kuma]",
    )
    cp.add_argument("--target", help="HOST:PORT of any delta-xDS server (with --cp external)")
    cp.add_argument("--cp-pid", type=int, help="PID of an external control plane, for CPU/RSS")
    cp.add_argument("--store", choices=["directory", "etcd", "rest"], default="directory")
    cp.add_argument("--location", help="folder, etcd URL or REST URL [a temporary folder / etcd]")
    cp.add_argument("--etcd-prefix", default="/kuma")
    cp.add_argument("--cp-cpus", default="0", help="CPUs for the control plane ['0'; 'none']")
    cp.add_argument("--harness-cpus", default="rest", help="CPUs for the harness [the others]")
    cp.add_argument("--cp-log-level", default="info")
    cp.add_argument(
        "--cp-gc-log",
        action="store_true",
        help="report the control plane's garbage-collection pauses over 20 ms",
    )
    cp.add_argument(
        "--baseline-scope",
        choices=["affected", "mesh"],
        default="affected",
        help="the baseline regenerates the affected proxies per change, or the whole mesh "
        "(sending only what changed, as Kuma's refresh does) [affected]",
    )
    cp.add_argument(
        "--compare-baseline",
        action="store_true",
        help="after the scenarios, switch to the baseline and run them again",
    )
    load = run.add_argument_group("sidecars")
    load.add_argument("--workers", type=int, default=2, help="worker processes [2]")
    load.add_argument("--rate", type=float, default=500.0, help="connections per second [500]")
    load.add_argument("--slow-fraction", type=float, default=0.0)
    load.add_argument("--slow-delay", type=float, default=0.05, help="seconds per response")
    load.add_argument("--nack-fraction", type=float, default=0.0, help="responses NACKed")
    load.add_argument(
        "--node",
        choices=["envoy", "minimal"],
        default="envoy",
        help="first request's node: Envoy 1.40's own (61 KB, 516 extensions) or id only [envoy]",
    )
    load.add_argument("--backoff-max", type=float, default=30.0, help="reconnect backoff cap [30]")
    load.add_argument(
        "--connect-concurrency",
        type=int,
        default=0,
        help="connection setups (connect to first response) in flight per worker at most; "
        "0: no bound [0]",
    )
    load.add_argument(
        "--insecure",
        action="store_true",
        help="kuma-cp without TLS and dataplane tokens (by default both are on, as operators "
        "run it: the sidecars verify its certificate and send a token each)",
    )
    load.add_argument(
        "--no-exact",
        action="store_true",
        help="do not check resources against the reference, only 'settled'",
    )
    knobs = run.add_argument_group("scenario knobs")
    knobs.add_argument("--changes", type=int, default=20, help="targeted changes [20]")
    knobs.add_argument("--fanout-changes", type=int, default=3)
    knobs.add_argument(
        "--policy-selects",
        type=int,
        default=100,
        help="proxies the policy scenario's MeshTimeout selects [100]",
    )
    knobs.add_argument("--policy-changes", type=int, default=20)
    knobs.add_argument("--churn-rate", type=float, default=50.0)
    knobs.add_argument("--churn-seconds", type=float, default=30.0)
    knobs.add_argument("--idle-seconds", type=float, default=10.0)
    knobs.add_argument("--timeout", type=float, default=300.0, help="per convergence wait [300]")
    envoys = commands.add_parser(
        "envoys",
        help="the real-Envoy check: N real Envoys on one kuma-cp, exact config via admin API",
    )
    envoys.add_argument("--proxies", type=int, default=20, help="real Envoys [20]")
    envoys.add_argument("--instances", type=int, default=5)
    envoys.add_argument("--outbounds", type=int, default=3)
    envoys.add_argument("--target-consumers", type=int, default=5)
    envoys.add_argument("--rate", type=float, default=10.0, help="Envoys started per second")
    envoys.add_argument("--changes", type=int, default=3)
    envoys.add_argument("--timeout", type=float, default=300.0)
    envoys.add_argument("--out", type=Path)
    from . import zones_cli  # it builds on this module

    zones_cli.add_parser(commands)
    out = run.add_argument_group("output")
    out.add_argument("--out", type=Path, help="folder for results.json, table.txt and plots")
    out.add_argument("--no-progress", action="store_true")
    return parser


def options_from(args: argparse.Namespace) -> Options:
    spec = MeshSpec(
        mesh=args.mesh,
        proxies=args.proxies,
        instances=args.instances,
        inbounds=args.inbounds,
        outbounds=args.outbounds,
        fan_in=not args.no_fan_in,
        target_consumers=args.target_consumers,
        transparent=args.transparent,
        reachable_all=args.reachable_all,
        mtls="" if args.mtls == "off" else args.mtls,
        mtls_expiration=args.mtls_expiration,
        default_policies=args.default_policies,
        fault_from=args.fault_from,
        every_policy=args.every_policy,
        # Tagged only when the scenario runs: other runs keep their exact Dataplanes.
        policy_group=args.policy_selects if "policy" in args.scenarios else 0,
        seed=args.seed,
    )
    cp_cpus, harness_cpus = cpu_sets(args)
    slow = args.slow_fraction or (0.1 if "slow" in args.scenarios else 0.0)
    return Options(
        spec=spec,
        cp=args.cp,
        target=args.target,
        cp_pid=args.cp_pid,
        store=args.store,
        location=args.location,
        etcd_prefix=args.etcd_prefix,
        workers=args.workers,
        rate=args.rate,
        cp_cpus=cp_cpus if args.cp != "external" else None,
        harness_cpus=harness_cpus,
        cp_log_level=args.cp_log_level,
        baseline_scope=args.baseline_scope,
        cp_gc_log=args.cp_gc_log,
        slow_fraction=slow,
        slow_delay=args.slow_delay,
        nack_fraction=args.nack_fraction,
        backoff_max=args.backoff_max,
        connect_concurrency=args.connect_concurrency,
        node=args.node,
        exact=not args.no_exact,
        secure=not args.insecure,
        timeout=args.timeout,
        progress=not args.no_progress,
        seed=args.seed,
    )


async def _scenarios(h: Harness, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        if name == "targeted":
            results[name] = await scenarios.targeted_change(h, changes=args.changes)
        elif name in ("fanout", "slow"):
            results[name] = await scenarios.fan_out(h, changes=args.fanout_changes)
        elif name == "policy":
            results[name] = await scenarios.policy_change(h, changes=args.policy_changes)
        elif name == "churn":
            results[name] = await scenarios.churn(
                h, rate=args.churn_rate, seconds=args.churn_seconds
            )
        elif name == "reconnect":
            results[name] = await scenarios.mass_reconnect(h)
        elif name == "rotation":
            results[name] = await rotation.rotation_wave(h)
        elif name == "restart" and h.kind != "external" and h.options.store != "rest":
            results[name] = await scenarios.restart(h)
    return results


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    names = list(ALL) if "all" in args.scenarios else list(args.scenarios)
    if "slow" in names and "fanout" in names and args.slow_fraction == 0:
        names.remove("fanout")  # with slow sidecars present, fan-out is what 'slow' measures
    h = Harness(options_from(args))
    results: dict[str, Any] = {
        "command": " ".join(["kuma-load", *sys.argv[1:]]),
        "machine": machine(),
    }
    try:
        await h.setup()
        results["setup"] = h.notes
        measured: dict[str, Any] = {
            "converge": await scenarios.initial_convergence(
                h, idle_seconds=args.idle_seconds, tail_seconds=3.0
            )
        }
        measured.update(await _scenarios(h, names, args))
        if args.compare_baseline and h.kind == "kuma":
            measured["switch_to_baseline"] = await scenarios.switch_to(h, "baseline")
            # The baseline applies Dataplane and Mesh events only: no policy scenario there.
            skipped = ("restart", "policy")
            baseline = await _scenarios(h, [n for n in names if n not in skipped], args)
            measured.update({f"baseline_{k}": v for k, v in baseline.items()})
            results["comparison"] = scenarios.compare(measured, baseline)
        results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        latencies = scenarios.latency_pairs(measured)
        results["scenarios"] = measured
    finally:
        await h.close()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_bytes(to_json(results))
        (args.out / "table.txt").write_text(table(results) + "\n")
        plots(results, latencies, args.out)
    return results


async def run_envoys(args: argparse.Namespace) -> dict[str, Any]:
    from .envoys import real_envoy_check

    spec = MeshSpec(
        proxies=args.proxies,
        instances=args.instances,
        outbounds=args.outbounds,
        target_consumers=args.target_consumers,
        real_envoy=True,
    )
    h = Harness(Options(spec=spec, timeout=args.timeout, progress=False, cp_cpus=None))
    results: dict[str, Any] = {
        "command": " ".join(["kuma-load", *sys.argv[1:]]),
        "machine": machine(),
    }
    try:
        await h.setup(sidecars=False)
        results["envoys"] = await real_envoy_check(h, args.proxies, args.rate, args.changes)
        results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        await h.close()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_bytes(to_json(results))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "envoys":
        print(to_json(asyncio.run(run_envoys(args))).decode())
        return 0
    if args.command == "zones":
        from .zones_cli import run_zones

        print(to_json(asyncio.run(run_zones(args))).decode())
        return 0
    unknown = sorted(set(args.scenarios) - {*SCENARIOS, "all"})
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    results = asyncio.run(run(args))
    print(table(results))
    if "comparison" in results:
        for name, row in results["comparison"].items():
            print(f"comparison {name}: " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
