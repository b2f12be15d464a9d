"""Server-sent events from a byte stream, with a bound on every line and event.

httpx-sse reads lines with `aiter_lines`, which holds a whole line in memory
however long it is: one 200 MB line cost 4 GB. This reader keeps at most
`max_line` bytes of an unfinished line (plus one network chunk) and at most
`max_event` bytes of an event's data, and raises `TooLong` past either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

_CR, _LF = 13, 10


class TooLong(Exception):
    """A line or an event passed its bound; `head` is its first bytes."""

    def __init__(self, what: str, limit: int, head: bytes) -> None:
        self.what, self.limit, self.head = what, limit, head
        super().__init__(f"{what} longer than {limit} bytes")


@dataclass(frozen=True, slots=True)
class Event:
    event: str  # "message" unless the server named it
    data: str


async def lines(chunks: AsyncIterator[bytes], max_line: int) -> AsyncIterator[bytes]:
    """Lines ended by LF, CRLF or CR (as the SSE spec says), without their ending."""
    buf = bytearray()
    after_cr = False  # the last line ended with CR: a LF right after it is the same ending
    async for chunk in chunks:
        if after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        after_cr = False
        start = len(buf)
        buf += chunk
        pos = 0
        # Scan only the new bytes: the unfinished part was scanned before.
        while True:
            cr = buf.find(b"\r", max(pos, start))
            lf = buf.find(b"\n", max(pos, start))
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            end = min(ends)
            if end - pos > max_line:
                raise TooLong("a line", max_line, bytes(buf[pos:pos + 200]))
            yield bytes(buf[pos:end])
            if buf[end] == _CR:
                if end + 1 < len(buf):
                    if buf[end + 1] == _LF:
                        end += 1
                else:
                    after_cr = True
            pos = start = end + 1
        del buf[:pos]
        if len(buf) > max_line:
            raise TooLong("a line", max_line, bytes(buf[:200]))
    if buf:
        yield bytes(buf)


async def events(chunks: AsyncIterator[bytes], *, max_line: int,
                 max_event: int) -> AsyncIterator[Event]:
    """The events of an SSE stream; comments, ids and retry hints are skipped."""
    data: list[str] = []
    size = 0
    name = ""
    async for raw in lines(chunks, max_line):
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
    # An event not ended by a blank line is dropped (the SSE spec): it may be cut.
