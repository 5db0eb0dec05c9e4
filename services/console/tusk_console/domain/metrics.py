"""Request rate and latency of each served model, from the inference service's /metrics.

Prometheus counters only grow, so a rate needs two readings: the tracker keeps the readings of
the last minute per inference URL (every page that shows traffic takes one) and reports the
change since the oldest of them; the first look shows totals only.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

WINDOW_SECONDS = 60.0
MIN_WINDOW_SECONDS = 1.0
REQUESTS = "tusk_inference_request_duration_seconds"
ERRORS = "tusk_inference_request_errors"


@dataclass
class ModelTraffic:
    requests: float = 0.0
    seconds: float = 0.0
    errors: float = 0.0
    # Cumulative histogram: upper bound -> requests at or below it.
    buckets: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelStats:
    requests: int
    errors: int
    rate_per_s: float | None  # None until two readings exist
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    window_s: float | None


def parse_metrics(text: str) -> dict[str, ModelTraffic]:
    traffic: dict[str, ModelTraffic] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (REQUESTS, ERRORS):
            continue
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            entry = traffic.setdefault(model, ModelTraffic())
            if sample.name == f"{REQUESTS}_count":
                entry.requests = sample.value
            elif sample.name == f"{REQUESTS}_sum":
                entry.seconds = sample.value
            elif sample.name == f"{REQUESTS}_bucket":
                entry.buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == f"{ERRORS}_total":
                entry.errors += sample.value
    return traffic


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile in seconds, interpolated within its bucket as Prometheus does."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


class RateTracker:
    def __init__(self) -> None:
        self._readings: dict[str, deque[tuple[float, dict[str, ModelTraffic]]]] = {}

    def observe(self, source: str, text: str, now: float | None = None) -> dict[str, ModelStats]:
        now = time.monotonic() if now is None else now
        current = parse_metrics(text)
        readings = self._readings.setdefault(source, deque())
        while readings and now - readings[0][0] > WINDOW_SECONDS:
            readings.popleft()
        previous = (
            readings[0] if readings and now - readings[0][0] >= MIN_WINDOW_SECONDS else None
        )
        readings.append((now, current))
        stats: dict[str, ModelStats] = {}
        for model, entry in current.items():
            before = previous[1].get(model) if previous else None
            window = now - previous[0] if previous else None
            if before is not None and window and window > 0 and entry.requests >= before.requests:
                delta = entry.requests - before.requests
                delta_buckets = {
                    b: c - before.buckets.get(b, 0.0) for b, c in entry.buckets.items()
                }
                rate: float | None = delta / window
                mean = (entry.seconds - before.seconds) / delta if delta else None
                buckets = delta_buckets if delta else entry.buckets
            else:
                rate, window = None, None
                mean = entry.seconds / entry.requests if entry.requests else None
                buckets = entry.buckets
            p50, p95 = quantile(buckets, 0.5), quantile(buckets, 0.95)
            stats[model] = ModelStats(
                requests=int(entry.requests),
                errors=int(entry.errors),
                rate_per_s=rate,
                mean_ms=None if mean is None else mean * 1000,
                p50_ms=None if p50 is None else p50 * 1000,
                p95_ms=None if p95 is None else p95 * 1000,
                window_s=window,
            )
        return stats
