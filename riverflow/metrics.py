"""Prometheus metric families, one class per worker kind, each on its own registry.

Names follow DESIGN.md (prefix ``riverflow_``, no per-sensor labels). Values that are computed
(consumer lag, model age) come from a collector at scrape time, never from a timer thread.
"""

from __future__ import annotations

import collections
import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from riverflow.errors import ConfigError
from riverflow.online_model.snapshot import REJECT_REASONS
from riverflow.online_model.tasks import Task
from riverflow.schemas import REASONS

if TYPE_CHECKING:
    from riverflow.health import Health

log = logging.getLogger(__name__)

P = "riverflow_"

# The *_created series of every counter and histogram nearly double a worker's page and no
# dashboard or alert reads them (a process restart already shows as a counter reset).
disable_created_metrics()
# A River predict_one on a small pipeline takes ~5-50 us; trees and ensembles up to a few ms.
MODEL_CALL_BUCKETS = (
    5e-6,
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    1e-2,
    2.5e-2,
    0.1,
)
# Reading ts -> prediction produced: milliseconds when keeping up, seconds to minutes in a backlog.
END_TO_END_BUCKETS = (
    1e-3,
    2.5e-3,
    5e-3,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
BATCH_BUCKETS = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# Labels arrive seconds to hours after the reading.
FEEDBACK_DELAY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)
# Versions between the learner's and the one that served a joined prediction: 0-1 when the
# served model keeps up, more when snapshots are slow to publish or to swap in.
VERSION_LAG_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 1000)
SNAPSHOT_BUCKETS = (1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GaugeCallback(Collector):
    """A gauge family whose samples are computed by ``fn`` each time Prometheus scrapes."""

    def __init__(
        self,
        name: str,
        doc: str,
        labels: list[str],
        fn: Callable[[], Iterable[tuple[list[str], float]]],
    ) -> None:
        self.name, self.doc, self.labels, self.fn = name, doc, labels, fn

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.doc, labels=self.labels)
        try:
            for values, value in self.fn():
                family.add_metric(values, value)
        except Exception:  # a scrape must never fail because a client is mid-rebalance
            log.debug("collector %s failed", self.name, exc_info=True)
        yield family


class _WorkerMetrics:
    """What every worker exports: refused input and snapshots, dead letters, model version,
    lag and whether it reaches Kafka."""

    #: dead-letter stages this worker can produce
    STAGES: tuple[str, ...] = ()

    def __init__(self, registry: CollectorRegistry | None, version_doc: str) -> None:
        r = self.registry = registry or CollectorRegistry()
        # The standard process_* (CPU, memory, file descriptors), python_gc_* and python_info
        # series: the worker's own registry replaces the global one that carries them.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.invalid_events = Counter(
            P + "invalid_events", "Input events refused, by reason", ["reason"], registry=r
        )
        self.dead_letters = Counter(
            P + "dead_letters", "Messages sent to dead-letters, by stage", ["stage"], registry=r
        )
        self.model_version = Gauge(P + "model_version", version_doc, registry=r)
        self.snapshot_rejected = Counter(
            P + "snapshot_rejected", "Model snapshots refused, by reason", ["reason"], registry=r
        )
        self.kafka_connected = Gauge(
            P + "kafka_connected",
            "1 while the worker holds a connection to a Kafka broker, 0 while it is cut off",
            registry=r,
        )
        _zero(self.invalid_events, REASONS)
        _zero(self.dead_letters, self.STAGES)
        _zero(self.snapshot_rejected, REJECT_REASONS)

    def add_lag(self, fn: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        self.registry.register(
            GaugeCallback(
                P + "consumer_lag",
                "Records behind the end of each partition",
                ["topic", "partition"],
                fn,
            )
        )


# Served values of regressors and anomaly scores: anomaly scores span [0, 1]; regression labels
# anything, so sign-symmetric decades by default (RIVERFLOW_OUTPUT_BUCKETS fits them to the
# label's own range).
DEFAULT_OUTPUT_BUCKETS = (
    *(-(10.0**e) for e in range(6, -3, -1)),
    0.0,
    *(10.0**e for e in range(-2, 7)),
)
ANOMALY_OUTPUT_BUCKETS = tuple(i / 10 for i in range(11))


class InferenceMetrics(_WorkerMetrics):
    STAGES = ("decode", "validate", "predict", "produce")

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        output_buckets: tuple[float, ...] = DEFAULT_OUTPUT_BUCKETS,
    ) -> None:
        super().__init__(registry, "Version of the model served")
        r = self.registry
        self.predictions = Counter(P + "predictions", "Predictions produced", registry=r)
        self.predicted_class = Counter(
            P + "predicted_class",
            f"Classifier predictions by class (the first {OutputDistribution.MAX_CLASSES} "
            'classes; the rest as "other")',
            ["class"],
            registry=r,
        )
        self.prediction_value = Histogram(
            P + "prediction_value",
            "Values served by regressors and anomaly scorers",
            buckets=output_buckets,
            registry=r,
        )
        self.predict_latency = Histogram(
            P + "predict_latency_seconds",
            "Model call per reading",
            buckets=MODEL_CALL_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = Histogram(
            P + "end_to_end_latency_seconds",
            "Reading ts to prediction produced",
            buckets=END_TO_END_BUCKETS,
            registry=r,
        )
        self.batch_latency = Histogram(
            P + "batch_latency_seconds",
            "One poll batch: decode, predict, produce, commit",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model_swaps = Counter(P + "model_swaps", "Model snapshots swapped in", registry=r)
        self.model_pinned = Gauge(
            P + "model_pinned",
            "1 while `riverflow models pin` holds the served version, 0 serving the latest",
            registry=r,
        )
        self.feature_drift_detections = Counter(
            P + "feature_drift_detections",
            "Drift detected on an input feature",
            ["feature"],
            registry=r,
        )
        self.feature_drift_score = Gauge(
            P + "feature_drift_score",
            "Drift detector statistic per feature",
            ["feature"],
            registry=r,
        )

    def add_model_age(self, fn: Callable[[], float]) -> None:
        self.registry.register(
            GaugeCallback(
                P + "model_age_seconds",
                "Seconds since the served model was created",
                [],
                lambda: [([], fn())],
            )
        )


class LearnerMetrics(_WorkerMetrics):
    STAGES = ("decode", "validate", "learn")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry, "Version the learner holds")
        r = self.registry
        self.feedback = Counter(
            P + "feedback",
            "Feedback by join outcome (joined|expired|duplicate|invalid)",
            ["outcome"],
            registry=r,
        )
        self.feedback_delay = Histogram(
            P + "feedback_delay_seconds",
            "Reading ts to label ts of joined pairs",
            buckets=FEEDBACK_DELAY_BUCKETS,
            registry=r,
        )
        self.pending_predictions = Gauge(
            P + "pending_predictions", "Predictions waiting for their label", registry=r
        )
        self.pending_feedback = Gauge(
            P + "pending_feedback", "Labels waiting for their prediction", registry=r
        )
        self.pending_bytes = Gauge(
            P + "pending_bytes",
            "Estimated message bytes waiting in the join: entries times their mean size",
            registry=r,
        )
        self.learner_active = Gauge(
            P + "learner_active",
            "1 while this learner is the active one, 0 standing by",
            registry=r,
        )
        self.learned = Counter(P + "learned", "Events the model learned from", registry=r)
        self.unlabelled_predictions = Counter(
            P + "unlabelled_predictions",
            "Predictions dropped unlabelled: ttl passed (expired) or memory bound (evicted)",
            ["reason"],
            registry=r,
        )
        self.learn_latency = Histogram(
            P + "learn_latency_seconds",
            "One learn_one call",
            buckets=MODEL_CALL_BUCKETS,
            registry=r,
        )
        self.model_metric = Gauge(
            P + "model_metric",
            "Prequential quality of served and learner models",
            ["source", "metric", "window"],
            registry=r,
        )
        self.served_version_lag = Histogram(
            P + "served_version_lag",
            "Learner version minus the version that served each joined prediction",
            buckets=VERSION_LAG_BUCKETS,
            registry=r,
        )
        self.concept_drift_detections = Counter(
            P + "concept_drift_detections",
            "Concept drift detected on the error stream",
            ["detector"],
            registry=r,
        )
        self.snapshots_published = Counter(
            P + "snapshots_published", "Model snapshots published", registry=r
        )
        self.snapshot_publish_failures = Counter(
            P + "snapshot_publish_failures",
            "Snapshot publish attempts that failed (each is retried)",
            registry=r,
        )
        self.snapshot_bytes = Gauge(P + "snapshot_bytes", "Size of the last snapshot", registry=r)
        self.snapshot_latency = Histogram(
            P + "snapshot_latency_seconds",
            "Serialize, sign and publish one snapshot",
            buckets=SNAPSHOT_BUCKETS,
            registry=r,
        )
        _zero(self.feedback, ("joined", "expired", "duplicate", "invalid"))
        _zero(self.unlabelled_predictions, ("expired", "evicted"))


class HistogramBatch:
    """Observations of one unlabelled histogram, counted here and added to it by :meth:`flush`.

    For per-event histograms on a hot loop: ``Histogram.observe`` takes two locks and walks the
    buckets each time; this keeps the bucket counts and the sum in plain numbers (same bucket
    rule: the first upper bound >= the value) and adds them once per batch, which Prometheus
    cannot tell apart from observing each value. Used from one thread.
    """

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        # prometheus_client keeps a histogram's upper bounds (ending with +Inf), one value per
        # bucket and the sum in these attributes; the unit test checks the totals against
        # observe() so a change in the client shows up there.
        self._bounds: list[float] = list(histogram._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def observe_all(self, amounts: Iterable[float]) -> None:
        """:meth:`observe` each of ``amounts``, with the lookups done once."""
        counts, bounds, total = self._counts, self._bounds, 0.0
        for amount in amounts:
            counts[bisect_left(bounds, amount)] += 1
            total += amount
        self._sum += total

    def flush(self) -> None:
        h, counts = self._histogram, self._counts
        for i, count in enumerate(counts):
            if count:
                h._buckets[i].inc(count)
                counts[i] = 0
        if self._sum:
            h._sum.inc(self._sum)
            self._sum = 0.0


def _zero(counter: Counter, values: Iterable[str]) -> None:
    """Create each known label child at 0, so rate() and alerts see the first increment."""
    for value in values:
        counter.labels(value)


class DeploymentLabels(Collector):
    """Every sample of ``registry`` with the process's ``model`` and ``deployment`` labels
    added, as Prometheus scrapes it: two deployments on one Prometheus never mix, and the
    worker's own metrics (and tests reading them) stay without them. One value of each per
    process, so the labels add no cardinality within a deployment."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self.registry, self.labels = registry, labels

    def collect(self) -> Iterable[Metric]:
        extra = self.labels
        for family in self.registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [s._replace(labels={**extra, **s.labels}) for s in family.samples]
            yield labelled


def deployment_labels(settings: Any) -> dict[str, str]:
    """The labels every metric of a worker carries: its model's name and its deployment."""
    return {"model": settings.model_name, "deployment": settings.deployment_name}


def serve(
    registry: CollectorRegistry,
    port: int | None,
    default: int,
    labels: dict[str, str] | None = None,
    health: Health | None = None,
) -> None:
    """Serve ``/metrics`` of ``registry`` (each sample with ``labels`` added) and, with
    ``health``, ``/healthz`` and ``/readyz`` (:mod:`riverflow.health`) from daemon threads on
    ``port`` (None: the command's ``default``; 0: not at all). A port already in use is a usage
    error."""
    port = default if port is None else port
    if not port:
        return
    exposed = registry
    if labels:
        exposed = CollectorRegistry()
        exposed.register(DeploymentLabels(registry, labels))
    metrics = make_wsgi_app(exposed)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if health is None or path not in ("/healthz", "/readyz"):
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        ok, text = health.live() if path == "/healthz" else health.ready()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [text.encode() + b"\n"]

    try:
        server = make_server("0.0.0.0", port, app, _Server, handler_class=_Quiet)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on port {port} ({exc}): pass another --metrics-port"
        ) from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://127.0.0.1:%d/metrics (and /healthz, /readyz)", port)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes come every few seconds
        pass


class OutputDistribution:
    """What the served model answers, counted per batch: output drift shows as a change of the
    class shares of a classifier or of the value histogram of a regressor or anomaly scorer.
    Classes are metric labels, so only the first :attr:`MAX_CLASSES` get their own."""

    MAX_CLASSES = 32

    def __init__(self, metrics: InferenceMetrics, task: Task) -> None:
        self.classes = task == "classification"
        self._counter = metrics.predicted_class
        self._labelled: dict[str, Any] = {}
        self._values = HistogramBatch(metrics.prediction_value)

    def add(self, outputs: list[Any]) -> None:
        if self.classes:
            for output, n in collections.Counter(map(str, outputs)).items():
                child = self._labelled.get(output)
                if child is None:
                    if len(self._labelled) < self.MAX_CLASSES:
                        child = self._labelled[output] = self._counter.labels(output)
                    else:
                        child = self._counter.labels("other")
                child.inc(n)
            return
        observe = self._values.observe
        for output in outputs:
            if output is not None:
                observe(float(output))
        self._values.flush()
