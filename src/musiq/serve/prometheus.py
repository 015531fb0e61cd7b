"""In-process counters, gauges and histograms, rendered as Prometheus text (format 0.0.4).

Deliberately tiny: the server has a handful of series with small, fixed label sets, and
the event loop is the only writer except for the model thread, so a lock per update is cheap.
"""
from __future__ import annotations

import math
import threading
from typing import Iterable

LabelKey = tuple[tuple[str, str], ...]


def _labels(labels: LabelKey, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = list(labels) + list(extra)
    if not items:
        return ""
    esc = (lambda v: v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"'))
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in items) + "}"


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing value per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(k)} {_num(v)}" for k, v in items]


class Gauge(_Metric):
    """A value that goes up and down, or is read from a function at render time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read=None) -> None:
        super().__init__(name, help_text)
        self._value = 0.0
        self._read = read

    def set(self, value: float) -> None:
        self._value = float(value)

    def read_from(self, read) -> None:
        """Take the value from ``read()`` whenever the metrics are rendered."""
        self._read = read

    def render(self) -> list[str]:
        value = self._read() if self._read is not None else self._value
        return self.header() + [f"{self.name} {_num(value)}"]


class Histogram(_Metric):
    """Cumulative buckets, sum and count, without labels."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Iterable[float]) -> None:
        super().__init__(name, help_text)
        self.buckets = sorted(float(b) for b in buckets) + [math.inf]
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        with self._lock:
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[i] += 1
                    break
            self._sum += value
            self._count += 1

    def render(self) -> list[str]:
        with self._lock:
            counts, total, n = list(self._counts), self._sum, self._count
        lines = self.header()
        running = 0
        for bound, c in zip(self.buckets, counts):
            running += c
            lines.append(f"{self.name}_bucket{_labels((), [('le', _num(bound))])} {running}")
        lines += [f"{self.name}_sum {_num(total)}", f"{self.name}_count {n}"]
        return lines


class Registry:
    """The server's metrics; ``render()`` is the body of ``GET /metrics``."""

    def __init__(self, max_batch_size: int) -> None:
        latency = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        self.requests = Counter("musiq_requests_total",
                                "HTTP requests answered, by route and status code")
        self.request_seconds = Histogram("musiq_request_duration_seconds",
                                         "Time from request start to response start", latency)
        self.images = Counter("musiq_images_total", "Images processed, by outcome (ok, error)")
        self.model_images = Counter(
            "musiq_model_images_total",
            "Model results given, by model and outcome (ok, error): an image scored by "
            "several models in one request counts once per model")
        self.rejected = Counter(
            "musiq_rejected_total",
            "Requests and connections refused, by reason: queue_full, body_memory, "
            "unavailable (503); too_large (413); timeout (504); body_timeout, header_timeout "
            "(408); unauthorized (401); forbidden_origin (403); connections (503, at the "
            "connection cap)")
        self.batches = Counter("musiq_batches_total",
                               "Forward passes run, by model and number of images in the batch")
        self.batch_size = Histogram("musiq_batch_size", "Images per forward pass",
                                    range(1, max_batch_size + 1))
        self.model_seconds = Histogram("musiq_model_seconds", "Time of one forward pass", latency)
        self.queue_depth = Gauge("musiq_queue_depth",
                                 "Images admitted and not yet answered (bounded by max_queue)")
        self.inflight = Gauge("musiq_inflight_requests", "Score requests being processed")

    def all(self) -> list[_Metric]:
        return [self.requests, self.request_seconds, self.images, self.model_images,
                self.rejected, self.batches,
                self.batch_size, self.model_seconds, self.queue_depth, self.inflight]

    def render(self) -> str:
        return "\n".join(line for m in self.all() for line in m.render()) + "\n"
