"""`@plait.tool`: a function plus its JSON schema, validator and run policy.

The schema is built from type hints and the docstring with pydantic, so a planner
prompt, a grammar and argument validation all come from the same source.
"""

from __future__ import annotations

import contextvars
import inspect
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, NotRequired, Required

import docstring_parser
import pydantic
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from plait._errors import ToolArgumentError

# The run whose workflow body is executing in this context (set by the engine).
_current_run: contextvars.ContextVar[Any] = contextvars.ContextVar("plait_run", default=None)


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """How the scheduler runs a tool's calls.

    retries      extra attempts after a failure whose exception is in `retry_on`
    backoff      first retry delay in seconds; doubles each attempt up to `max_backoff`
    jitter       each delay is multiplied by a random factor in [1 - jitter, 1 + jitter]
    timeout      seconds one attempt may take; None for no limit
    concurrency  at most this many calls of this tool in flight; None for no limit
    idempotent   running a call twice is harmless (the journal re-runs it on resume)
    resources    what one call needs, e.g. {"CPU": 2} or {"GPU": 1}: its calls run as
                 Ray tasks that ask for them (plait.executors); None runs them where
                 the run's executor runs every call
    speculate    read-only: a call has no effect beyond its result, and its result is
                 a function of its arguments, so the compiler may start it before the
                 planner writes it (`ask(..., speculate=...)`) and throw it away when
                 the guess was wrong. Not implied by `idempotent`: `set_status("paused")`
                 is idempotent, yet running it on a wrong guess is a real side effect.
    """

    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: float = 0.1
    max_backoff: float = 10.0
    jitter: float = 0.5
    timeout: float | None = None
    concurrency: int | None = None
    idempotent: bool = False
    # Out of the hash (a mapping has none); equal policies still hash alike.
    resources: Mapping[str, float] | None = field(default=None, hash=False)
    speculate: bool = False

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be >= 1 or None")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be > 0 or None")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on):
            raise ValueError("retry_on must be a tuple of exception classes")
        if self.resources is not None:
            if not isinstance(self.resources, Mapping) or not all(
                isinstance(k, str) and k and isinstance(v, (int, float))
                and not isinstance(v, bool) and v > 0
                for k, v in self.resources.items()
            ):
                raise ValueError('resources must map resource names to amounts > 0, '
                                 'e.g. {"CPU": 2} or {"GPU": 1}')
            # Frozen like the rest of the policy: a tool's needs do not change under it.
            object.__setattr__(self, "resources", types.MappingProxyType(dict(self.resources)))

    def delay(self, attempt: int, unit_random: float) -> float:
        """Backoff before retry number `attempt` (1-based); `unit_random` in [0, 1)."""
        base = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return base * (1 - self.jitter + 2 * self.jitter * unit_random)


def _pydantic_error(tool: str, exc: pydantic.ValidationError) -> ToolArgumentError:
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    arg = str(loc[0]) if loc else None
    got = err.get("input") if err.get("type") != "missing" else None
    expected = str(err.get("msg", "a valid value")).removeprefix("Input should be ")
    if err.get("type") == "missing":
        expected = "a value (it is required)"
    return ToolArgumentError(tool, arg, expected, got)


@dataclass(frozen=True, slots=True, eq=False)
class Tool:
    """A callable the runtime may schedule. Build one with `@plait.tool`, from a
    JSON schema with `Tool.from_schema`, or from an MCP server with `plait.mcp_tools`.
    """

    fn: Callable[..., Any]
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema of the arguments object
    policy: ToolPolicy
    is_async: bool
    param_names: tuple[str, ...]
    required: frozenset[str]
    # How argument values are checked: the one seam between a Python tool (pydantic,
    # from its type hints) and a schema tool (jsonschema). Each takes the values
    # and returns them checked (maybe coerced or completed); `_validate_some` checks
    # only the values given (the others are not known yet). They raise
    # ToolArgumentError, or pydantic's ValidationError (mapped in `_checked`).
    _validate: Callable[[Mapping[str, Any]], Mapping[str, Any]] = field(repr=False)
    _validate_some: Callable[[Mapping[str, Any]], Mapping[str, Any]] = field(repr=False)
    _positional: tuple[str, ...] = field(repr=False)
    _fast_min: int = field(repr=False)  # fewest positional args that bind without checks
    # How a journaled value becomes the call's value again on replay (None: as it is),
    # called with the node's context current; the tool journals that form (journal_as).
    revive: Callable[[Any], Any] | None = field(default=None, repr=False)
    # Per parameter whose type pydantic passes through unchanged for some exact value
    # types: (its position, those types). See `_checked`.
    _exact: Mapping[str, tuple[int, frozenset[type]]] = field(default_factory=dict, repr=False)
    # The signature a planner sees; None: the function's own (a Python tool's).
    _signature: inspect.Signature | None = field(default=None, repr=False)

    @property
    def signature(self) -> str:
        """`name(a: int, b: str = 'x')`, as shown to a planner."""
        sig = self._signature or inspect.signature(self.fn, eval_str=True)
        return f"{self.name}{sig}"

    @classmethod
    def from_schema(cls, name: str, description: str, parameters: Mapping[str, Any] | None,
                    call: Callable[..., Any], **policy: Any) -> Tool:
        """A tool whose arguments are described by a JSON schema (an OpenAI function's
        `parameters`, an MCP tool's `inputSchema`) and checked against it.

        `call` receives the checked arguments as keywords (defaults filled in);
        sync or async. `policy`: the keywords of `@plait.tool` (retries, timeout,
        concurrency, idempotent, ...). A schema construct plait cannot show a
        planner or check is refused here, naming the construct and the tool.
        """
        from plait.tools._schema import schema_tool

        return schema_tool(name, description, parameters, call, policy=tool_policy(**policy))

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Map a call's positional and keyword arguments to parameter names.

        Checks arity only; values are checked by `validate` once they exist.
        """
        names, positional = self.param_names, self._positional
        if not kwargs and self._fast_min <= len(args) <= len(positional):
            # Fast path: the common all-positional call (one argument: no zip, 5x faster).
            return {positional[0]: args[0]} if len(args) == 1 else dict(zip(positional, args))
        if len(args) > len(positional):
            raise ToolArgumentError(
                self.name,
                None,
                f"at most {len(positional)} positional arguments ({', '.join(positional)})",
                args,
            )
        bound = dict(zip(positional, args))
        for key, value in kwargs.items():
            if key not in names:
                raise ToolArgumentError(
                    self.name, key, f"one of the parameters ({', '.join(names)})", None
                )
            if key in bound:
                raise ToolArgumentError(self.name, key, "a single value, got it twice", None)
            bound[key] = value
        missing = [n for n in names if n in self.required and n not in bound]
        if missing:
            raise ToolArgumentError(self.name, missing[0], "a value (it is required)", None)
        return bound

    def validate(self, arguments: Mapping[str, Any], partial: bool = False) -> dict[str, Any]:
        """Check and coerce argument values against the schema; a new dict.

        `partial`: check only the values given (the others are not known yet).
        """
        checked = self._checked(arguments, partial)
        return dict(checked) if checked is arguments else checked

    def _checked(self, arguments: Mapping[str, Any], partial: bool = False) -> Mapping[str, Any]:
        """`validate`, but `arguments` itself when no value in it changes (no copy).

        Pydantic is skipped when it would return the values as they are: every
        value's exact type is one its parameter's plain annotation (`int`,
        `str | None`, none at all, ...) keeps, the names come in the parameters'
        order (pydantic's output order) and none required is missing. A bool for
        an `int`, an int for a `float`, a constrained or container type go to
        pydantic, which coerces or refuses them exactly as before.
        """
        exact = self._exact
        if exact:
            last = -1
            for name, value in arguments.items():
                spec = exact.get(name)
                if spec is None or spec[0] <= last or type(value) not in spec[1]:
                    break
                last = spec[0]
            else:
                if (partial or len(arguments) == len(self.param_names)
                        or self.required.issubset(arguments)):
                    return arguments
        try:
            return (self._validate_some if partial else self._validate)(arguments)
        except pydantic.ValidationError as exc:
            raise _pydantic_error(self.name, exc) from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside a workflow run: add a node and return its `Ref`. Outside: call the function."""
        run = _current_run.get()
        if run is not None:
            return run.submit(self, self.bind(args, kwargs))
        return self.fn(**self.validate(self.bind(args, kwargs)))


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    backoff: float = 0.1,
    max_backoff: float = 10.0,
    jitter: float = 0.5,
    timeout: float | None = None,
    concurrency: int | None = None,
    idempotent: bool = False,
    resources: Mapping[str, float] | None = None,
    speculate: bool = False,
) -> Any:
    """Make a function a plait tool: `@plait.tool` or `@plait.tool(retries=3, timeout=5)`.

    `resources={"GPU": 1}` (or `{"CPU": 2}`, any Ray resource) runs each call as a
    Ray task asking for them (docs/ray.md); it needs `plait[ray]` when a call runs.
    """
    policy = tool_policy(retries=retries, retry_on=retry_on, backoff=backoff,
                         max_backoff=max_backoff, jitter=jitter, timeout=timeout,
                         concurrency=concurrency, idempotent=idempotent,
                         resources=resources, speculate=speculate)

    def wrap(f: Callable[..., Any]) -> Tool:
        made = make_tool(f, name=name, policy=policy)
        unseen = _unseen(made)
        if unseen:
            warnings.warn(f"tool {made.name!r}: {unseen}", ToolWarning, stacklevel=3)
        return made

    return wrap(fn) if fn is not None else wrap


def tool_policy(*, retry_on: tuple[type[BaseException], ...] = (Exception,),
                **keywords: Any) -> ToolPolicy:
    """The policy of `@plait.tool`'s keywords; an unknown keyword is a TypeError."""
    return ToolPolicy(retry_on=tuple(retry_on), **keywords)


class ToolWarning(UserWarning):
    """A tool registered without what a planner needs to use it well."""


def _unseen(t: Tool) -> str:
    """What a planner will not see about `t`, in words ('' when it sees it all)."""
    problems = []
    if not t.description:
        problems.append("no docstring, so the planner sees only its signature, not what "
                        "it does")
    try:
        hints = typing.get_type_hints(t.fn)
    except Exception:  # an unresolvable annotation: make_tool has already said so
        hints = {}
    untyped = [n for n in t.param_names if n not in hints]
    if untyped:
        problems.append(f"no type hint on {', '.join(untyped)}, so the planner does not "
                        "know what to pass and any value is accepted")
    return "; ".join(problems)


def make_tool(fn: Callable[..., Any], *, name: str | None = None, policy: ToolPolicy,
              revive: Callable[[Any], Any] | None = None) -> Tool:
    if isinstance(fn, Tool):
        fn = fn.fn
    if not callable(fn):
        raise TypeError(f"@plait.tool needs a function, got {fn!r}")
    tool_name = name or fn.__name__
    if not tool_name.isidentifier():
        raise ValueError(f"tool name {tool_name!r} is not an identifier")
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    param_docs = {p.arg_name: p.description or "" for p in doc.params}
    description = "\n\n".join(x for x in (doc.short_description, doc.long_description) if x)

    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    exact: dict[str, tuple[int, frozenset[type]]] = {}
    fields: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    names: list[str] = []
    positional: list[str] = []
    required: set[str] = set()
    for p in sig.parameters.values():
        if p.kind is p.POSITIONAL_OR_KEYWORD:
            positional.append(p.name)
        elif p.kind is not p.KEYWORD_ONLY:
            raise TypeError(
                f"tool {tool_name!r}: parameter {p.name!r} is {p.kind.description}; "
                "tools take named parameters only"
            )
        annotation = hints.get(p.name, Any)
        kept = _kept_types(annotation)
        if kept:
            exact[p.name] = (len(names), kept)
        info = pydantic.Field(description=param_docs.get(p.name) or None)
        optional[p.name] = NotRequired[Annotated[annotation, info]]
        if p.default is p.empty:
            required.add(p.name)
            fields[p.name] = Required[Annotated[annotation, info]]
        else:
            fields[p.name] = NotRequired[Annotated[annotation, info]]
        names.append(p.name)
    args_type = TypedDict(f"{tool_name}_arguments", fields)  # type: ignore[operator]
    args_type.__pydantic_config__ = pydantic.ConfigDict(  # type: ignore[attr-defined]
        extra="forbid", arbitrary_types_allowed=True
    )
    adapter = pydantic.TypeAdapter(args_type)
    partial_type = TypedDict(f"{tool_name}_some_arguments", optional)  # type: ignore[operator]
    partial_type.__pydantic_config__ = args_type.__pydantic_config__  # type: ignore[attr-defined]
    try:
        schema = adapter.json_schema()
    except pydantic.errors.PydanticUserError:  # arbitrary types have no JSON schema
        schema = {"type": "object", "properties": {n: {} for n in names}}
    schema["title"] = tool_name
    if description:
        schema["description"] = description
    return Tool(
        fn=fn,
        name=tool_name,
        description=description,
        parameters=schema,
        policy=policy,
        is_async=inspect.iscoroutinefunction(fn),
        param_names=tuple(names),
        required=frozenset(required),
        _validate=adapter.validate_python,
        _validate_some=pydantic.TypeAdapter(partial_type).validate_python,
        _positional=tuple(positional),
        _fast_min=len(required) if required <= set(positional) else len(positional) + 1,
        revive=revive,
        _exact=exact,
    )


# Types whose exact instances pydantic's lax mode returns as they are.
_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


def _kept_types(annotation: Any) -> frozenset[type]:
    """The value types a parameter annotated `annotation` takes unchanged (maybe none).

    Only plain scalars, unions of them and no annotation at all: anything with
    metadata (`Annotated`, `Literal`, constraints) or structure is left to pydantic.
    """
    if annotation is Any:
        return _SCALARS
    if annotation is None:
        return frozenset({type(None)})
    if any(annotation is t for t in _SCALARS):  # `is`: an annotation may be unhashable
        return frozenset({annotation})
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if all(any(m is t for t in _SCALARS) for m in members):
            return frozenset(members)
    return frozenset()
