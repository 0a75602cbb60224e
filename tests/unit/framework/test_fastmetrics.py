"""``vtwist.fastmetrics`` exposes what prometheus_client's own metrics would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from vtwist.fastmetrics import LabelledCounter, LabelledHistogram


def _samples(registry: CollectorRegistry) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")  # (prometheus_client's creation times)
    )


def test_histogram_and_its_counter_match_prometheus_client() -> None:
    ours_r, theirs_r = CollectorRegistry(), CollectorRegistry()
    ours = LabelledHistogram(
        "t_seconds", "Doc.", "kind", (0.1, 1, 5), counter=("t_runs", "Runs."), values=["idle"]
    )
    ours_r.register(ours)
    theirs = Histogram("t_seconds", "Doc.", ["kind"], buckets=(0.1, 1, 5), registry=theirs_r)
    runs = Counter("t_runs", "Runs.", ["kind"], registry=theirs_r)
    theirs.labels("idle")
    runs.labels("idle")
    # Bounds are inclusive (le), above the last bound is +Inf.
    for kind, value in [("a", 0.05), ("a", 0.1), ("b", 0.5), ("a", 3.0), ("a", 99.0)]:
        ours.observe(kind, value)
        theirs.labels(kind).observe(value)
        runs.labels(kind).inc()
    assert _samples(ours_r) == _samples(theirs_r)
    assert ours.count("a") == 4 and ours.count("idle") == 0 and ours.count("never") == 0
    assert b't_seconds_bucket{kind="a",le="0.1"} 2.0' in generate_latest(ours_r)


def test_counter_matches_prometheus_client() -> None:
    ours_r, theirs_r = CollectorRegistry(), CollectorRegistry()
    ours = LabelledCounter("q", "Queries.", ["keyspace", "kind"])
    ours_r.register(ours)
    theirs = Counter("q", "Queries.", ["keyspace", "kind"], registry=theirs_r)
    for labels in [("ks", "select"), ("ks", "select"), ("other", "insert")]:
        ours.inc(labels)
        theirs.labels(*labels).inc()
    assert _samples(ours_r) == _samples(theirs_r)
    assert ours.value(("ks", "select")) == 2 and ours.value(("ks", "insert")) == 0


def test_histogram_buckets_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        LabelledHistogram("h", "d", "k", (1, 0.5))
    with pytest.raises(ValueError, match="ascending"):
        LabelledHistogram("h", "d", "k", ())
