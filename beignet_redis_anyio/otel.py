"""OpenTelemetry metrics and traces for the cache: ``otel_observer()``.

Install the extra (``pip install beignet-redis-anyio[otel]``, which is
``opentelemetry-api`` alone: the SDK and exporters are the application's
choice) and pass the observer to the provider::

    async with open_redis_provider(observer=otel_observer()) as cache: ...

Each :class:`CacheEvent` becomes, following OpenTelemetry's semantic
conventions for database clients where they apply:

* ``db.client.operation.duration`` (histogram, seconds): one sample per
  operation — per *batch* for the batch operations (the event with
  ``batch_index == 0``, with ``db.operation.batch.size``) — and per finished
  early refresh;
* ``beignet.cache.hits`` / ``beignet.cache.misses`` / ``beignet.cache.errors``
  (counters, per key: a batch of 100 keys with 3 misses adds 3 misses), so a
  hit ratio is ``hits / (hits + misses)``;
* ``beignet.cache.breaker.open`` (up-down counter): 1 while the circuit
  breaker is open (refusing calls) or probing, 0 while it is closed;
* with ``spans=True``, one ``CLIENT`` span per operation (per batch), ended
  when the event arrives and started ``duration_seconds`` before it.

Every measurement carries ``db.system.name = "redis"``, ``db.operation.name``
(the Redis command for the simple operations — ``GET``, ``SET``, ``DEL``,
``EXISTS``, ``MGET``, ``BATCH SET`` — and ``remember``, ``remember_many``,
``refresh`` for the ones made of several commands) and
``beignet.cache.operation`` (the event's operation); an error adds
``error.type`` (the exception's class name). Keys are never attributes: they
are unbounded in number (every metric series they split would be a new
time series) and may say more than a dashboard should.

The observer never raises into the cache: anything that fails inside it is
logged (``beignet_redis_anyio.otel``) and dropped. It is synchronous, fast
and takes no lock of its own, as an observer must be: it runs inline in the
cache's operations.
"""

from __future__ import annotations

import logging
import time

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from . import __version__
from ._cache.events import CacheEvent, Observer

__all__ = ["otel_observer"]

_log = logging.getLogger("beignet_redis_anyio.otel")

#: What ``db.operation.name`` says for each operation.
_OPERATION_NAMES = {
    "cache.get": "GET",
    "cache.set": "SET",
    "cache.delete": "DEL",
    "cache.has": "EXISTS",
    "cache.remember": "remember",
    "cache.get_many": "MGET",
    "cache.set_many": "BATCH SET",
    "cache.delete_many": "DEL",
    "cache.remember_many": "remember_many",
    "cache.refresh": "refresh",
}
#: The semantic conventions' advice for ``db.client.operation.duration``.
_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]


def otel_observer(
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    *,
    spans: bool = False,
) -> Observer:
    """An observer recording the cache's events as OpenTelemetry metrics
    (and spans, with ``spans=True``), on the given providers or the global
    ones. One observer per provider: it keeps the breaker's state."""
    meter = metrics.get_meter("beignet_redis_anyio", __version__, meter_provider=meter_provider)
    tracer = trace.get_tracer("beignet_redis_anyio", __version__, tracer_provider)
    duration = meter.create_histogram(
        "db.client.operation.duration",
        unit="s",
        description="Duration of cache operations.",
        explicit_bucket_boundaries_advisory=_BUCKETS,
    )
    counters = {
        "hit": meter.create_counter(
            "beignet.cache.hits", unit="{key}", description="Keys found in the cache."
        ),
        "miss": meter.create_counter(
            "beignet.cache.misses", unit="{key}", description="Keys not found in the cache."
        ),
        "error": meter.create_counter(
            "beignet.cache.errors", unit="{error}", description="Keys whose operation failed."
        ),
    }
    breaker = meter.create_up_down_counter(
        "beignet.cache.breaker.open",
        unit="1",
        description="1 while the circuit breaker keeps Redis out of use, else 0.",
    )
    breaker_open = False

    def record(event: CacheEvent) -> None:
        nonlocal breaker_open
        if event.operation == "cache.breaker":
            opened = event.status == "opened"
            if opened != breaker_open:
                breaker_open = opened
                breaker.add(1 if opened else -1, {"db.system.name": "redis"})
            return
        name = _OPERATION_NAMES.get(event.operation)
        if name is None:
            return  # cache.lock: no operation of its own
        attributes: dict[str, AttributeValue] = {
            "db.system.name": "redis",
            "db.operation.name": name,
            "beignet.cache.operation": event.operation,
        }
        if event.status == "error":
            attributes["error.type"] = _error_type(event.error)
        counter = counters.get(event.status)
        if counter is not None:
            counter.add(1, attributes)
        if event.batch_index != 0:
            return  # one duration (and span) per batch
        if event.batch_size > 1:
            attributes["db.operation.batch.size"] = event.batch_size
        duration.record(event.duration_seconds, attributes)
        if spans:
            end = time.time_ns()
            span = tracer.start_span(
                name,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=end - round(event.duration_seconds * 1e9),
            )
            if event.status == "error":
                span.set_status(Status(StatusCode.ERROR, event.error))
            span.end(end_time=end)

    def observer(event: CacheEvent) -> None:
        try:
            record(event)
        except Exception:
            _log.warning("recording %s %s failed", event.operation, event.status, exc_info=True)

    return observer


def _error_type(error: str | None) -> str:
    """The exception's class name, from the event's ``"Class: message"``."""
    head = (error or "").split(":", 1)[0]
    return head if head.isidentifier() else "_OTHER"  # the semantic conventions' fallback
