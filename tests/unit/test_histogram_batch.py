"""HistogramBatch: observations added once per batch read the same as observe() on each."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from riverflow.metrics import MODEL_CALL_BUCKETS, HistogramBatch


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("all_at_once", [False, True], ids=["observe", "observe_all"])
def test_flushed_batches_equal_one_observe_per_value(all_at_once: bool) -> None:
    rng = random.Random(7)
    direct_registry, batched_registry = CollectorRegistry(), CollectorRegistry()
    direct = Histogram("t", "t", buckets=MODEL_CALL_BUCKETS, registry=direct_registry)
    batch = HistogramBatch(
        Histogram("t", "t", buckets=MODEL_CALL_BUCKETS, registry=batched_registry)
    )
    # values on the bounds (a bound is inclusive), beyond the last one (+Inf) and zero
    values = [rng.expovariate(1e4) for _ in range(2000)] + list(MODEL_CALL_BUCKETS) + [0.0, 9.0]
    for chunk in (values[:700], values[700:701], [], values[701:]):
        for v in chunk:
            direct.observe(v)
            if not all_at_once:
                batch.observe(v)
        if all_at_once:
            batch.observe_all(chunk)
        batch.flush()
    got, want = samples(batched_registry), samples(direct_registry)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert got[("t_count", "")] == len(values)


def test_nothing_is_added_before_a_flush_and_nothing_twice() -> None:
    registry = CollectorRegistry()
    batch = HistogramBatch(Histogram("t", "t", buckets=(1.0,), registry=registry))
    batch.observe(0.5)
    assert samples(registry)[("t_count", "")] == 0
    batch.flush()
    batch.flush()
    assert samples(registry)[("t_count", "")] == 1
    assert samples(registry)[("t_sum", "")] == 0.5
