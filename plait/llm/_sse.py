"""Server-sent events from a byte stream, with a bound on every line and event.

httpx-sse reads lines with `aiter_lines`, which holds a whole line in memory
however long it is: one 200 MB line cost 4 GB. This reader keeps at most
`max_line` bytes of an unfinished line (plus one network chunk) and at most
`max_event` bytes of an event's data, and raises `TooLong` past either.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n?|\n")


class TooLong(Exception):
    """A line or an event passed its bound; `head` is its first bytes."""

    def __init__(self, what: str, limit: int, head: bytes) -> None:
        self.what, self.limit, self.head = what, limit, head
        super().__init__(f"{what} longer than {limit} bytes")


@dataclass(frozen=True, slots=True)
class Event:
    event: str  # "message" unless the server named it
    data: str


class Lines:
    """Splits bytes into lines ended by LF, CRLF or CR (as the SSE spec says)."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._after_cr = False  # the last chunk ended with CR: a LF next is the same ending

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        buf = self._buf
        scan = len(buf)  # the unfinished line before it holds no line ending
        buf += chunk
        out = []
        pos = 0
        for m in _EOL.finditer(buf, scan):
            if m.start() - pos > self.max_line:
                raise TooLong("a line", self.max_line, bytes(buf[pos:pos + 200]))
            out.append(bytes(buf[pos:m.start()]))
            pos = m.end()
        self._after_cr = pos == len(buf) and buf[-1:] == b"\r"
        del buf[:pos]
        if len(buf) > self.max_line:
            raise TooLong("a line", self.max_line, bytes(buf[:200]))
        return out


async def events(chunks: AsyncIterator[bytes], *, max_line: int,
                 max_event: int) -> AsyncIterator[Event]:
    """The events of an SSE stream; comments, ids and retry hints are skipped. An
    event not ended by a blank line is dropped (the SSE spec): it may be cut."""
    splitter = Lines(max_line)
    data: list[str] = []
    size = 0
    name = ""
    async for chunk in chunks:
        for raw in splitter.feed(chunk):
            if not raw:
                if data:
                    yield Event(name or "message", "\n".join(data))
                data, size, name = [], 0, ""
                continue
            if raw[:1] == b":":
                continue
            field, _, value = raw.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                size += len(value) + 1
                if size > max_event:
                    raise TooLong("an event", max_event, value[:200])
                data.append(value.decode("utf-8", "replace"))
            elif field == b"event":
                name = value.decode("utf-8", "replace")
