"""Whether a run is traced, decided when it starts, without importing OpenTelemetry.

In order: `plait.otel.disable()` turns tracing off; `plait.otel.enable(...)` turns
it on (with a tracer provider of the caller's, or as below); else a global tracer
provider the process set (its OpenTelemetry setup, `opentelemetry-instrument`)
is used; else the standard `OTEL_*` environment, when it names an exporter or an
endpoint, configures a provider of plait's own. Otherwise nothing is traced, and
a run gets no listener: it builds no event at all.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.otel._spans import Tracing

EXTRA = "pip install 'plait[otel]'"
_TRUE = ("1", "true", "yes", "on")


class _State:
    explicit: Tracing | None = None  # enable()
    disabled = False  # disable()
    from_env: Tracing | None = None  # the provider the environment configured, once built
    env_failed = False  # the environment asks for tracing and plait[otel] is missing: warned
    from_global: Tracing | None = None  # for the process's global provider


_state = _State()


def tracing_now() -> Tracing | None:
    """What traces a run starting now, or None when tracing is off."""
    state = _state
    t = state.explicit
    if t is None:
        if state.disabled:
            return None
        t = _global()
        if t is None:
            t = state.from_env
            if t is None:
                if state.env_failed or not env_configured():
                    return None
                t = _from_env()
                if t is None:
                    return None
    return t


def trace_id_of(run_id: str) -> int:
    """The trace id of run `run_id`: derived from it, the same in every session."""
    digest = hashlib.sha256(b"plait-run:" + run_id.encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1


def env_configured(environ: Any = os.environ) -> bool:
    """The environment asks for traces: an exporter (OTEL_TRACES_EXPORTER, not
    "none") or an OTLP endpoint, and the SDK is not disabled (OTEL_SDK_DISABLED)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return any(e.strip() not in ("", "none") for e in exporters.split(","))
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def capture_from_env() -> bool:
    return os.environ.get("PLAIT_OTEL_CAPTURE_CONTENT", "").strip().lower() in _TRUE


def _global() -> Tracing | None:
    """Tracing into the process's global tracer provider, if its code set one.

    Looked at per run, cheaply: without OpenTelemetry imported there is none."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    t = _state.from_global
    if t is None or t.provider is not provider:
        try:
            from plait.otel._spans import Tracing
        except ImportError:  # the API is there, not the SDK plait's spans are made with
            return None
        t = _state.from_global = Tracing(provider, capture=capture_from_env())
    return t


def _from_env() -> Tracing | None:
    try:
        from plait.otel._env import provider_from_env
        from plait.otel._spans import Tracing
    except ImportError as exc:
        _state.env_failed = True
        warnings.warn(f"the OTEL_* environment asks for traces, but plait's tracing needs "
                      f"its extra ({exc.name} is missing): {EXTRA}", RuntimeWarning,
                      stacklevel=4)
        return None
    try:
        provider = provider_from_env()
    except Exception as exc:  # a bad OTEL_* value: tracing is off, the run goes on
        warnings.warn(f"the OTEL_* environment could not configure tracing: {exc}",
                      RuntimeWarning, stacklevel=4)
        provider = None
    if provider is None:
        _state.env_failed = True
        return None
    _state.from_env = Tracing(provider, capture=capture_from_env())
    return _state.from_env
