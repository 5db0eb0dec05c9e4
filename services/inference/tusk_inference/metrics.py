"""The inference service's Prometheus metrics, on a registry of its own (one per context, so
that several services or test contexts in one process never clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    10,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ModelMetrics:
    """One model's children, looked up once: ``labels()`` costs a lock and a dict per call."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.latency = metrics.request_seconds.labels(model)
        self.batch_rows = metrics.batch_rows.labels(model)
        self.batch_requests = metrics.batch_requests.labels(model)
        self.queue = metrics.queue_seconds.labels(model)
        self.versions = metrics.loaded_versions.labels(model)
        self.reloads = metrics.reloads.labels(model)
        self.reload_failures = metrics.reload_failures.labels(model)
        self._errors = metrics.request_errors
        self._model = model

    def error(self, status: int) -> None:
        self._errors.labels(self._model, str(status)).inc()

    # BatchObserver
    def batch(self, rows: int, requests: int) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)

    def queued(self, seconds: float) -> None:
        self.queue.observe(seconds)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "tusk_inference_request_duration_seconds",
            "Inference requests answered, by model: from the body read to the answer.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_errors = Counter(
            "tusk_inference_request_errors",
            "Inference requests that failed, by HTTP status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "tusk_inference_batch_rows",
            "Rows in each batched model run.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "tusk_inference_batch_requests",
            "Requests in each batched model run.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "tusk_inference_queue_seconds",
            "Time a batched request waited for its run.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loaded_versions = Gauge(
            "tusk_inference_loaded_versions",
            "Versions of the model held in memory.",
            ["model"],
            registry=self.registry,
        )
        self.serving = Gauge(
            "tusk_inference_serving_info",
            "1 for the version each model serves by default.",
            ["model", "version"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "tusk_inference_reloads",
            "New versions loaded and swapped in.",
            ["model"],
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "tusk_inference_reload_failures",
            "New versions that could not be loaded (the previous one kept serving).",
            ["model"],
            registry=self.registry,
        )
        self._models: dict[str, ModelMetrics] = {}

    def model(self, name: str) -> ModelMetrics:
        if name not in self._models:
            self._models[name] = ModelMetrics(self, name)
        return self._models[name]

    def render(self) -> bytes:
        return generate_latest(self.registry)
