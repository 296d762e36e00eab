"""Prometheus metrics at /monitoring/prometheus/metrics, under TF Serving's names where it has one.

TF Serving exports its TensorFlow monitoring metrics with '/' turned into ':'
(`:tensorflow:serving:request_count`), counters without a `_total` suffix and latencies in
microseconds; dashboards written for it query those names, so the exposition keeps them.
prometheus_client accepts names that start with ':' (Prometheus's own name rule allows it), but
writes a counter's samples as NAME_total: `exposition` renames those of TF Serving's counters back.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# TF Serving's latency buckets: 10 us times powers of 1.8, 33 of them (~20 minutes).
MICROSECOND_BUCKETS = tuple(float(f"{10 * 1.8**i:.6g}") for i in range(33))
BATCH_SIZE_BUCKETS = tuple(2**i for i in range(15))  # 1 .. 16384 rows
REQUEST_COUNT = ":tensorflow:serving:request_count"
LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"
LOAD_LATENCY = ":tensorflow:cc:saved_model:load_latency"
_TF_SERVING_COUNTERS = (REQUEST_COUNT, LOAD_ATTEMPT_COUNT, LOAD_LATENCY)
disable_created_metrics()  # TF Serving has no *_created series; they would double every counter


class Metrics:
    """One registry per server, so that several servers in one process (tests) count apart."""

    def __init__(self):
        """Declares every metric: one statement each, so long by nature (names, help texts and
        labels are TF Serving's where it has the metric)."""
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.request_count = Counter(
            REQUEST_COUNT,
            "The total number of requests.",
            ["model_name", "status"],
            registry=registry,
        )
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            buckets=MICROSECOND_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "agnews_serving_requests",
            "Requests by model, version (and its label: stable, canary or none), API, "
            "entrypoint and status.",
            ["model_name", "version", "version_label", "API", "entrypoint", "status"],
            registry=registry,
        )
        self.model_calls = Counter(
            "agnews_serving_model_calls",
            "Predict requests that reached a version's signature, by model, version, its label "
            "and outcome (OK, or FAILED when the model's call raised): what a canary is judged on.",
            ["model_name", "version", "version_label", "outcome"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "agnews_serving_batch_size",
            "Rows in one signature call (a batch of requests).",
            ["model_name"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "agnews_serving_batch_queue_wait_microseconds",
            "Time a request waited for its batch's signature call to start.",
            ["model_name"],
            buckets=MICROSECOND_BUCKETS,
            registry=registry,
        )
        self.load_attempts = Counter(
            LOAD_ATTEMPT_COUNT,
            "The number of times a SavedModel was loaded, by outcome.",
            ["model_path", "status"],
            registry=registry,
        )
        self.load_latency = Counter(
            LOAD_LATENCY,
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ["model_path"],
            registry=registry,
        )
        self.warmup_latency = Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"],
            buckets=MICROSECOND_BUCKETS,
            registry=registry,
        )

    def exposition(self) -> bytes:
        """The Prometheus text format, TF Serving's counters under their own names."""
        text = generate_latest(self.registry).decode()
        for name in _TF_SERVING_COUNTERS:
            text = text.replace(f"{name}_total", name)
        return text.encode()
