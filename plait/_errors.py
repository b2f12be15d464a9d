"""Every error plait raises on purpose derives from PlaitError."""

from __future__ import annotations


class PlaitError(Exception):
    """Base class of plait's own errors."""


class NotRetryable(Exception):
    """Mixin: retrying the same call cannot help, whatever the tool's policy says."""


class ToolArgumentError(PlaitError, NotRetryable, TypeError):
    """Arguments that do not fit a tool's schema.

    Carries the tool, the argument and what was expected, so a planner can be
    asked to repair exactly that call.
    """

    def __init__(self, tool: str, argument: str | None, expected: str, got: object = None):
        self.tool = tool
        self.argument = argument
        self.expected = expected
        self.got = got
        where = f"argument {argument!r}" if argument else "arguments"
        detail = f"; got {got!r}" if got is not None else ""
        super().__init__(f"tool {tool!r}: {where}: expected {expected}{detail}")


class GraphError(PlaitError, ValueError):
    """A graph that cannot run: a cycle, an unknown tool, a dangling reference."""


class OptionError(PlaitError, ValueError):
    """An option given a value it cannot take (`max_concurrency=0`); a command shows
    it as one `error:` line."""


class RefMisuseError(PlaitError, TypeError):
    """A `Ref` (a tool call's future value inside a workflow) used as if it were the
    value: formatted, tested, compared, computed with. The message names the call
    and says to `await` it."""


class RunError(PlaitError):
    """A run ended with failed nodes; `.result` holds every result and every error."""

    def __init__(self, message: str, result: object):
        super().__init__(message)
        self.result = result


class InDoubtError(PlaitError, NotRetryable):
    """A resumed call that started before a crash and has no result: it may have run."""
