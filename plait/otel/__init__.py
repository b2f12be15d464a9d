"""OpenTelemetry traces of runs (`pip install 'plait[otel]'`); see docs/otel.md.

Tracing is on when the process is configured for OpenTelemetry: by the standard
OTEL_* environment (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER, ...), by
a global tracer provider its code set, or by `enable(tracer_provider)`. It
applies to every run: `plait.run`, `plait.ask`, `plait.map` and the CLI.
Arguments, values and messages are in spans only with capture on
(`capture_content=True` or PLAIT_OTEL_CAPTURE_CONTENT=1); secrets never are.
"""

from __future__ import annotations

from typing import Any

from plait.otel._hook import EXTRA, _state, capture_from_env, trace_id_of

__all__ = ["disable", "enable", "trace_id"]


def enable(tracer_provider: Any = None, *, capture_content: bool | None = None) -> None:
    """Trace every run of this process into `tracer_provider`.

    Without one: the process's global tracer provider if its code set one, else one
    configured by the OTEL_* environment. capture_content: put call arguments,
    values and LLM messages in spans (default: PLAIT_OTEL_CAPTURE_CONTENT); they may
    hold private data, so they are off unless asked for.
    """
    try:
        from opentelemetry import trace

        from plait.otel._spans import Tracing
    except ImportError as exc:
        raise ImportError(f"plait's OpenTelemetry tracing needs its extra ({exc.name} is "
                          f"missing): {EXTRA}") from exc
    capture = capture_from_env() if capture_content is None else capture_content
    if tracer_provider is None:
        tracer_provider = trace.get_tracer_provider()
        if isinstance(tracer_provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            from plait.otel._env import provider_from_env
            from plait.otel._hook import env_configured

            tracer_provider = provider_from_env() if env_configured() else None
            if tracer_provider is None:
                raise ValueError(
                    "plait.otel.enable() found nowhere to send traces: pass a "
                    "tracer_provider, set a global one, or set OTEL_EXPORTER_OTLP_ENDPOINT "
                    "(or OTEL_TRACES_EXPORTER)")
    _state.explicit = Tracing(tracer_provider, capture=capture)
    _state.disabled = False


def disable() -> None:
    """Trace no run of this process, whatever the environment or a global provider say."""
    _state.explicit = None
    _state.disabled = True


def trace_id(run_id: str) -> str:
    """The trace id (32 hex digits) of run `run_id`'s trace, the same in every session
    of the run: what to search for in a tracing backend. (A run started inside a
    span of the caller's is in the caller's trace instead.)"""
    return format(trace_id_of(run_id), "032x")
