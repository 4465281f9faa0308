"""otel_observer(): the cache's events as OpenTelemetry metrics and spans,
read back with the SDK's in-memory reader and exporter."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from beignet_redis_anyio import CacheEvent, RedisConfig, open_redis_provider
from beignet_redis_anyio.otel import otel_observer

pytestmark = pytest.mark.anyio


class Telemetry:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """Each data point of metric ``name``: its attributes and the point."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found

    def count(self, name: str, **attributes: Any) -> int:
        return sum(
            point.value
            for attrs, point in self.points(name)
            if all(attrs.get(k.replace("_", ".")) == v for k, v in attributes.items())
        )


async def test_counters_histogram_and_spans_follow_the_conventions(server_url: str) -> None:
    telemetry = Telemetry()
    observer = otel_observer(telemetry.meters, telemetry.tracers, spans=True)
    config = RedisConfig(url=server_url, key_prefix=f"t:{uuid.uuid4().hex}:")
    async with open_redis_provider(config, observer=observer) as cache:
        await cache.set("a", "1")
        await cache.get("a")
        await cache.get("missing")
        await cache.get_many(["a", "x", "y"])

        async def boom() -> str:
            raise LookupError("no row")

        with pytest.raises(LookupError):
            await cache.remember("r", boom)

    assert telemetry.count("beignet.cache.hits", db_operation_name="GET") == 1
    assert telemetry.count("beignet.cache.misses", db_operation_name="GET") == 1
    assert telemetry.count("beignet.cache.hits", db_operation_name="MGET") == 1
    assert telemetry.count("beignet.cache.misses", db_operation_name="MGET") == 2
    assert telemetry.count("beignet.cache.errors", error_type="LookupError") == 1

    durations = {
        (attrs["db.operation.name"], attrs.get("db.operation.batch.size")): point
        for attrs, point in telemetry.points("db.client.operation.duration")
    }
    assert durations[("GET", None)].count == 2
    assert durations[("SET", None)].count == 1
    assert durations[("MGET", 3)].count == 1  # one sample for the batch, not three
    for attrs, _ in telemetry.points("db.client.operation.duration"):
        assert attrs["db.system.name"] == "redis"

    spans = telemetry.exporter.get_finished_spans()
    assert [span.name for span in spans] == ["SET", "GET", "GET", "MGET", "remember"]
    assert all(span.kind is SpanKind.CLIENT for span in spans)
    assert spans[3].attributes is not None and spans[3].attributes["db.operation.batch.size"] == 3
    failed = spans[4]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "LookupError"
    assert failed.end_time is not None and failed.start_time is not None
    assert failed.end_time >= failed.start_time


async def test_no_spans_unless_asked(server_url: str) -> None:
    telemetry = Telemetry()
    config = RedisConfig(url=server_url, key_prefix=f"t:{uuid.uuid4().hex}:")
    async with open_redis_provider(
        config, observer=otel_observer(telemetry.meters, telemetry.tracers)
    ) as cache:
        await cache.get("a")
    assert telemetry.exporter.get_finished_spans() == ()
    assert telemetry.count("beignet.cache.misses") == 1


def test_breaker_state_is_one_while_open() -> None:
    telemetry = Telemetry()
    observer = otel_observer(telemetry.meters)

    def breaker(status: Any) -> None:
        observer(CacheEvent(operation="cache.breaker", key="", status=status))

    breaker("opened")
    assert telemetry.count("beignet.cache.breaker.open") == 1
    breaker("opened")  # a failed half-open probe opens it again: still one
    assert telemetry.count("beignet.cache.breaker.open") == 1
    breaker("closed")
    assert telemetry.count("beignet.cache.breaker.open") == 0


def test_the_observer_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def get_meter(self, *args: Any, **kwargs: Any) -> Any:
            return self

        def __getattr__(self, name: str) -> Any:
            def make(*args: Any, **kwargs: Any) -> Any:
                return self

            return make

        def add(self, *args: Any) -> None:
            raise RuntimeError("exporter down")

    observer = otel_observer(Broken())  # type: ignore[arg-type]
    observer(CacheEvent(operation="cache.get", key="k", status="hit"))
    assert "recording cache.get hit failed" in caplog.text


def test_an_error_that_is_not_a_class_name_is_other() -> None:
    telemetry = Telemetry()
    observer = otel_observer(telemetry.meters)
    event = CacheEvent(
        operation="cache.get", key="k", status="error", error="the server closed the connection"
    )
    observer(event)
    assert telemetry.count("beignet.cache.errors", error_type="_OTHER") == 1


async def test_bypassed_batches_count_as_errors_like_single_keys(own_server: Any) -> None:
    telemetry = Telemetry()
    observer = otel_observer(telemetry.meters, telemetry.tracers)
    config = RedisConfig(
        url=own_server.url, key_prefix="t:", failure_policy="bypass", connect_timeout=1
    )

    async def load(missing: list[str]) -> dict[str, str]:
        return dict.fromkeys(missing, "row")

    async def one() -> str:
        return "row"

    async with open_redis_provider(config, observer=observer) as cache:
        own_server.stop()
        await cache.remember_many([f"page:{n}" for n in range(50)], load)
        await cache.remember("single", one)
    errors = telemetry.count("beignet.cache.errors", error_type="ConnectionError")
    assert telemetry.count("beignet.cache.errors", db_operation_name="remember_many") == 50
    assert telemetry.count("beignet.cache.errors", db_operation_name="remember") == 1
    assert errors == 51
