"""Per-statement metrics counted in plain lists and exported at scrape time.

prometheus_client's ``Counter.inc`` and ``Histogram.observe`` take a lock and walk the
buckets in Python on every call; on a proxy's per-statement path that costs more than the
rest of its bookkeeping. Roles run in one reactor thread, which also serves ``/metrics``,
so these collectors count without locks and build the metric families when scraped.

* ``LabelledHistogram``: a histogram by one label (``observe(value, seconds)``: a bisect
  and two list updates), optionally also exported as a counter of the same observations
  (``<counter>_total{label}``).
* ``LabelledCounter``: a counter by several labels (``inc(labels)``: one dict update).

Label sets are as bounded as the callers' values (statement kinds, keyspaces, tablet
types), like prometheus_client's own children.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["LabelledCounter", "LabelledHistogram"]


class LabelledHistogram(Collector):
    """A histogram ``name{label}`` with ``buckets`` (upper bounds, ascending); with
    ``counter``, also ``<counter>_total{label}`` counting the same observations."""

    def __init__(
        self,
        name: str,
        doc: str,
        label: str,
        buckets: Sequence[float],
        *,
        counter: tuple[str, str] | None = None,
        values: Sequence[str] = (),
    ) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError("buckets must be ascending upper bounds")
        self.name, self.doc, self.label, self.counter = name, doc, label, counter
        self._buckets = tuple(float(b) for b in buckets)
        self._bounds = [repr(b) for b in self._buckets] + ["+Inf"]
        # Per label value: a count per bucket (a value lands in the first bucket whose
        # bound is >= it, as Prometheus' ``le``), one for +Inf, then the sum.
        self._sum = len(self._buckets) + 1
        self._series: dict[str, list[float]] = {v: self._new() for v in values}

    def _new(self) -> list[float]:
        return [0] * self._sum + [0.0]

    def observe(self, value: str, seconds: float) -> None:
        """One observation of ``seconds`` under label ``value``."""
        series = self._series.get(value)
        if series is None:
            series = self._series[value] = self._new()
        series[bisect_left(self._buckets, seconds)] += 1
        series[self._sum] += seconds

    def count(self, value: str) -> int:
        """How many observations ``value`` has."""
        series = self._series.get(value)
        return 0 if series is None else int(sum(series[: self._sum]))

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        """The families with the current values."""
        counter = None
        if self.counter is not None:
            counter = CounterMetricFamily(self.counter[0], self.counter[1], labels=[self.label])
        histogram = HistogramMetricFamily(self.name, self.doc, labels=[self.label])
        for value, series in sorted(self._series.items()):
            total, cumulative = 0, []
            for bound, n in zip(self._bounds, series[: self._sum], strict=True):
                total += int(n)
                cumulative.append((bound, total))
            if counter is not None:
                counter.add_metric([value], total)
            histogram.add_metric([value], cumulative, series[self._sum])
        if counter is not None:
            yield counter
        yield histogram

    def describe(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        """The families' names (for the registry's duplicate check)."""
        if self.counter is not None:
            yield CounterMetricFamily(self.counter[0], "", labels=[self.label])
        yield HistogramMetricFamily(self.name, "", labels=[self.label])


class LabelledCounter(Collector):
    """A counter ``name_total{labels...}``."""

    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self._counts: dict[tuple[str, ...], int] = {}

    def inc(self, values: tuple[str, ...]) -> None:
        """Add one under ``values`` (one per label, in order)."""
        counts = self._counts
        counts[values] = counts.get(values, 0) + 1

    def value(self, values: tuple[str, ...]) -> int:
        """The count under ``values``."""
        return self._counts.get(values, 0)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The family with the current values."""
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for values, n in sorted(self._counts.items()):
            family.add_metric(list(values), n)
        yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        """The family's name (for the registry's duplicate check)."""
        yield CounterMetricFamily(self.name, "", labels=self.labels)
