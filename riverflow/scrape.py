"""Read a worker's /metrics page: the live summary of ``riverflow up`` uses it, and tests do.

>>> page = Page.parse('# TYPE x_total counter\\nx_total{a="1"} 2\\nx_total{a="2"} 3\\n')
>>> page.sum("x_total"), page.sum("x_total", a="2")
(5.0, 3.0)
>>> quantile(0.5, {0.1: 2.0, 1.0: 4.0, float("inf"): 4.0}, {})
0.1
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[dict[str, str], float]


@dataclass
class Page:
    """The samples of one or more scraped pages, by sample name."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Page:
        page = cls()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                page.samples.setdefault(s.name, []).append((dict(s.labels), s.value))
        return page

    @classmethod
    def fetch(cls, urls: Iterable[str], timeout_s: float = 1.0) -> Page:
        """Scrape and merge ``urls``; a worker that does not answer contributes nothing."""
        pages = []
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:
                    pages.append(cls.parse(response.read().decode()))
            except OSError:
                continue
        return cls.merge(pages)

    @classmethod
    def merge(cls, pages: Iterable[Page]) -> Page:
        """One page with the samples of all ``pages``."""
        page = cls()
        for one in pages:
            for name, samples in one.samples.items():
                page.samples.setdefault(name, []).extend(samples)
        return page

    def select(self, name: str, **match: str) -> list[Sample]:
        return [
            (labels, v)
            for labels, v in self.samples.get(name, [])
            if all(labels.get(k) == want for k, want in match.items())
        ]

    def sum(self, name: str, **match: str) -> float:
        return float(sum(v for _, v in self.select(name, **match)))

    def max(self, name: str, **match: str) -> float | None:
        values = [v for _, v in self.select(name, **match)]
        return max(values) if values else None

    def buckets(self, name: str) -> dict[float, float]:
        """Cumulative bucket counts of a histogram, summed over every process."""
        out: dict[float, float] = {}
        for labels, v in self.select(name + "_bucket"):
            le = float(labels["le"])
            out[le] = out.get(le, 0.0) + v
        return out


def quantile(q: float, now: dict[float, float], before: dict[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` over the increase between two bucket snapshots
    (linear within the bucket that holds the rank); None without observations."""
    bounds = sorted(now)
    counts = [now[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return None
