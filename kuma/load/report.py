"""Results out: JSON, a plain table, PNG plots (latency CDF, convergence curve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from .stats import Summary


def to_json(results: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(results), indent=2)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def table(results: dict[str, Any]) -> str:
    """One line per measured quantity: scenario, metric, value."""
    rows: list[tuple[str, str, str]] = []
    for scenario, result in results.get("scenarios", {}).items():
        if not isinstance(result, dict):
            continue
        for key, value in result.items():
            if key in ("curve", "traffic") or key.startswith("_"):
                continue
            if isinstance(value, Summary):
                text = (
                    f"p50 {_ms(value.p50)}  p90 {_ms(value.p90)}  p99 {_ms(value.p99)}  "
                    f"max {_ms(value.max)} ms  (n={value.count})"
                )
            elif isinstance(value, dict):
                text = "  ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, list))
            else:
                text = str(value)
            rows.append((scenario, key, text))
    width = max((len(r[0]) for r in rows), default=8)
    key_width = max((len(r[1]) for r in rows), default=8)
    return "\n".join(f"{s:<{width}}  {k:<{key_width}}  {v}" for s, k, v in rows)


def plots(results: dict[str, Any], latencies: dict[str, list[float]], folder: Path) -> list[Path]:
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    written: list[Path] = []
    if latencies:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name, values in latencies.items():
            ordered = sorted(values)
            if not ordered:
                continue
            n = len(ordered)
            axes.plot(
                [v * 1000 for v in ordered],
                [(k + 1) / n for k in range(n)],
                label=f"{name} (n={n})",
            )
        axes.set_xscale("log")
        axes.set_xlabel("store write → sidecar received (ms)")
        axes.set_ylabel("fraction of (change, sidecar) pairs")
        axes.set_title("Propagation latency CDF")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        path = folder / "latency_cdf.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    curves = {
        name: result["curve"]
        for name, result in results.get("scenarios", {}).items()
        if isinstance(result, dict) and result.get("curve")
    }
    if curves:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name, curve in curves.items():
            axes.plot([p[0] for p in curve], [p[1] for p in curve], label=name)
        axes.set_xlabel("seconds since start")
        axes.set_ylabel("sidecars holding their full config")
        axes.set_title("Convergence")
        axes.grid(True, alpha=0.3)
        axes.legend()
        path = folder / "convergence.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
