"""A tracer provider configured by the standard OTEL_* environment, as the SDK's own
auto-configuration reads it.

OTEL_TRACES_EXPORTER names the exporters (default `otlp` when an OTLP endpoint is
set); `otlp` is OTLP over HTTP/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs
opentelemetry-exporter-otlp-proto-grpc), any other name an exporter package's
entry point (`console` is the SDK's). Endpoint, headers, timeout and compression
are the exporter's own OTEL_EXPORTER_OTLP_* variables; the batching is the
BatchSpanProcessor's (OTEL_BSP_*); the sampler OTEL_TRACES_SAMPLER; the service
OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (service name `plait` when unset).

The provider is plait's own, not made global: a process that sets its own global
provider later is not refused. It flushes at exit.
"""

from __future__ import annotations

import os
import warnings
from importlib.metadata import entry_points
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_GROUP = "opentelemetry_traces_exporter"


def provider_from_env() -> TracerProvider | None:
    """A provider exporting where the environment says, or None (a warning says why)."""
    exporters = [_exporter(name) for name in _names()]
    found = [e for e in exporters if e is not None]
    if not found:
        return None
    resource = Resource.create()
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "plait"}))
    provider = TracerProvider(resource=resource)
    for exporter in found:
        # Batched: a node's span costs the run a queue append, never an export.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _names() -> list[str]:
    names = os.environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        return ["otlp"]  # an endpoint is set (see _hook.env_configured)
    return [n.strip() for n in names.split(",") if n.strip() not in ("", "none")]


def _exporter(name: str) -> Any:
    if name == "otlp":
        protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
        name = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
    found = entry_points(group=_GROUP, name=name)
    if not found:
        package = {"otlp_proto_grpc": " (pip install opentelemetry-exporter-otlp-proto-grpc)"}
        warnings.warn(f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package "
                      f"provides{package.get(name, '')}: its spans are not exported",
                      RuntimeWarning, stacklevel=6)
        return None
    return next(iter(found)).load()()
