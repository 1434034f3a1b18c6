"""The harness's pure parts: the mesh plan, latency attribution, the digest."""

from __future__ import annotations

from kuma.load.mesh import SHARED, MeshSpec, Plan, churn_proxies, service_name
from kuma.load.scenarios import busy_after
from kuma.load.stats import Written, latencies, percentile, summarize
from kuma.load.wire import digest_of, entry_hash


def test_plan_shapes() -> None:
    plan = Plan(MeshSpec(proxies=95, instances=10, outbounds=3, target_consumers=7))
    assert plan.spec.services == 10
    assert len(plan.instances_of(9)) == 5
    assert len(plan.consumers(0)) == 95  # every proxy calls 'shared'
    assert len(plan.consumers(1)) == 7
    assert all(len(calls) >= 4 for calls in plan.calls)
    assert service_name(0) == SHARED
    document = plan.document(3, rev=4)
    assert document["networking"]["inbound"][0]["tags"]["rev"] == "4"
    assert Plan(plan.spec).calls == plan.calls  # deterministic


def test_churn_cycles_over_services() -> None:
    plan = Plan(MeshSpec(proxies=50, instances=10))
    picked = churn_proxies(plan, 8, seed=3)
    services = [plan.service_of[p] for p in picked]
    assert SHARED not in {service_name(s) for s in services}
    assert len(set(services[:4])) == 4


def test_a_later_change_received_first_counts_for_both() -> None:
    changes = [
        Written(1, 1, "svc", (10, 11), written_at=100.0),
        Written(2, 1, "svc", (10, 11), written_at=100.5),
    ]
    # Sidecar 10 got both versions; sidecar 11 only the second (the first was coalesced).
    receipts = {1: [(10, 100.1)], 2: [(10, 100.6), (11, 100.7)]}
    pairs, missing = latencies(changes, receipts)
    assert missing == 0
    assert sorted((s, round(v, 3)) for s, v in pairs) == [
        (10, 0.1),
        (10, 0.1),
        (11, 0.2),
        (11, 0.7),
    ]


def test_receipts_before_the_write_do_not_count() -> None:
    changes = [Written(1, 1, "svc", (10,), written_at=100.0)]
    _, missing = latencies(changes, {1: [(10, 99.0)]})
    assert missing == 1


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    summary = summarize(reversed(values))
    assert (summary.p90, summary.max, summary.count) == (90.0, 100.0, 100)


def test_digest_is_order_free_and_incremental() -> None:
    config = {0: {"a": "1", "b": "2"}, 1: {"a": "3"}}
    value, count = digest_of(config)
    assert count == 3
    assert digest_of({1: {"a": "3"}, 0: {"b": "2", "a": "1"}}) == (value, count)
    replaced = value ^ entry_hash(0, "b", "2") ^ entry_hash(0, "b", "9")
    assert digest_of({0: {"a": "1", "b": "9"}, 1: {"a": "3"}}) == (replaced, 3)


def test_sidecars_that_nacked_are_excused() -> None:
    changes = [Written(1, 1, "svc", (10, 11), written_at=100.0)]
    pairs, missing = latencies(changes, {1: [(10, 100.2)]}, excused=frozenset({11}))
    assert missing == 0
    assert [s for s, _ in pairs] == [10]


def test_busy_after_convergence_ends_with_the_last_busy_window() -> None:
    # Windows of 0.25 s starting 0.1 s after the last sidecar converged.
    assert busy_after([0.9, 0.5, 0.02, 0.0], 0.1) == 0.6
    assert busy_after([0.9, 0.01, 0.3, 0.0], 0.1) == 0.85  # busy again: not idle yet
    assert busy_after([0.0, 0.05, 0.0], 0.1) == 0.1  # idle from the first window
    assert busy_after([0.9, 0.9, 0.9], 0.1) is None  # still busy when the tail ended
