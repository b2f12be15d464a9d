"""In-process tracing into the SDK's in-memory exporter, reset after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plait.otel
from plait.otel._hook import _state


@pytest.fixture(autouse=True)
def no_tracing_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* of the developer's shell turns tracing on here; tracing is off after."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_") or name == "PLAIT_OTEL_CAPTURE_CONTENT":
            monkeypatch.delenv(name)
    yield
    _state.explicit = None
    _state.disabled = False


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


@pytest.fixture
def spans(provider: TracerProvider) -> InMemorySpanExporter:
    """Every run of the test traced into this exporter (content capture off)."""
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plait.otel.enable(provider)
    return exporter
