"""Dataset sinks on real files: round trips through the sources, atomic writes,
values JSON cannot hold, Parquet row groups and schema widening, bounded memory."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import os
import subprocess
import sys
import tracemalloc
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest

from plait.data import (
    JsonlSink,
    ParquetSink,
    Sink,
    SinkError,
    open_sink,
    read_jsonl,
    read_parquet,
)
from plait.llm import MissingExtraError

ROOT = Path(__file__).resolve().parents[2]

ROWS = [
    {
        "id": i,
        "text": f"réponse {i} 😀",
        "score": i / 4,
        "ok": i % 3 == 0,
        "tags": ["a", f"t{i}"],
        "meta": {"model": "m", "tokens": i * 10, "nested": {"deep": [i, i + 1]}},
        "maybe": None if i % 2 else f"v{i}",
    }
    for i in range(100)
]


def write_all(sink: Sink, rows: list[dict]) -> Sink:
    for row in rows:
        sink.write(row)
    sink.close()
    return sink


def read_back(path: Path) -> list[dict | None]:
    source = read_parquet(path) if path.suffix == ".parquet" else read_jsonl(path)
    rows = list(source)
    assert all(r.error is None for r in rows), [r.error for r in rows if r.error]
    return [r.data for r in rows]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip_through_the_matching_source(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    sink = write_all(open_sink(path), ROWS)
    assert sink.rows_written == 100  # type: ignore[attr-defined]
    assert read_back(path) == ROWS
    assert os.listdir(tmp_path) == [path.name]  # no temp file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as any file the user writes


def test_jsonl_is_utf8_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_all(JsonlSink(path), [{"t": "é 😀 \u2028"}, {"t": "line\nbreak"}])
    raw = path.read_bytes()
    assert "é 😀".encode() in raw  # not \u-escaped
    assert raw.count(b"\n") == 2 and raw.endswith(b"\n")
    assert [json.loads(line) for line in raw.splitlines()] == [
        {"t": "é 😀 \u2028"},
        {"t": "line\nbreak"},
    ]


class Color(enum.Enum):
    RED = "red"


class Verdict(pydantic.BaseModel):
    ok: bool
    at: datetime.datetime
    color: Color


@dataclasses.dataclass
class Span:
    start: int
    end: int


def test_values_json_cannot_hold_are_made_plain(tmp_path: Path) -> None:
    at = datetime.datetime(2026, 12, 2, 5, 30, tzinfo=datetime.UTC)
    uid = uuid.UUID(int=7)
    row = {
        "verdict": Verdict(ok=True, at=at, color=Color.RED),
        "when": at,
        "day": datetime.date(2026, 12, 2),
        "span": Span(1, 5),
        "color": Color.RED,
        "id": uid,
        "path": Path("/a/b"),
        "set": {"b", "a"},
        "tuple": (1, 2),
    }
    path = tmp_path / "out.jsonl"
    write_all(open_sink(path), [row])
    assert read_back(path) == [
        {
            "verdict": {"ok": True, "at": "2026-12-02T05:30:00Z", "color": "red"},
            "when": "2026-12-02T05:30:00+00:00",
            "day": "2026-12-02",
            "span": {"start": 1, "end": 5},
            "color": "red",
            "id": str(uid),
            "path": "/a/b",
            "set": ["a", "b"],
            "tuple": [1, 2],
        }
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\x00\x01", "column 'bad': bytes cannot be written to JSON Lines: decode them"),
        (math.nan, "column 'bad': NaN and infinity are not JSON numbers"),
        ([1, {"x": math.inf}], "column 'bad': NaN and infinity are not JSON numbers"),
        ("\ud800", "column 'bad': text that is not valid Unicode"),
        (object(), "column 'bad': a object cannot be written to JSON"),
    ],
)
def test_jsonl_refuses_a_row_naming_the_column_and_writes_nothing_of_it(
    tmp_path: Path, value: object, message: str
) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path)
    sink.write({"id": 1})
    with pytest.raises(SinkError, match=message.replace("(", r"\(")):
        sink.write({"id": 2, "bad": value})
    sink.write({"id": 3})  # the sink goes on
    sink.close()
    assert read_back(path) == [{"id": 1}, {"id": 3}]


def test_rows_must_be_dicts_with_string_columns(tmp_path: Path) -> None:
    for sink in (JsonlSink(tmp_path / "a.jsonl"), ParquetSink(tmp_path / "a.parquet")):
        with pytest.raises(SinkError, match="a row must be a dict of column -> value; got list"):
            sink.write([1, 2])  # type: ignore[arg-type]
        with pytest.raises(SinkError, match=r"column names must be strings; got 1 \(int\)"):
            sink.write({1: "x"})  # type: ignore[dict-item]
        sink.abort()


# ---------------------------------------------------------------- atomicity


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_nothing_is_at_path_until_close_and_abort_leaves_nothing(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"out{suffix}"
    sink = open_sink(path, **({"row_group_size": 10} if suffix == ".parquet" else {}))
    for row in ROWS:
        sink.write(row)
    assert not path.exists()
    temp = sink.temp_path  # type: ignore[attr-defined]
    assert temp.parent == tmp_path and temp.stat().st_size > 0  # rows went to disk
    sink.abort()
    assert os.listdir(tmp_path) == []
    sink.abort()  # twice is fine

    path.write_text("the previous output\n")
    with pytest.raises(RuntimeError, match="boom"), open_sink(path) as sink:
        sink.write(ROWS[0])
        raise RuntimeError("boom")
    assert path.read_text() == "the previous output\n"  # an aborted job replaces nothing
    assert os.listdir(tmp_path) == [path.name]
    with open_sink(path) as sink:
        sink.write(ROWS[0])
    assert read_back(path) == [ROWS[0]]
    with pytest.raises(SinkError, match="is closed"):
        sink.write(ROWS[1])


CRASH = """
import os, sys
from plait.data import open_sink
sink = open_sink(sys.argv[1], **({"row_group_size": 5} if sys.argv[1].endswith("parquet") else {}))
for i in range(50):
    sink.write({"i": i, "text": "x" * 100})
sys.stdout.write("written\\n"); sys.stdout.flush()
os._exit(1)  # a crash: no close, no abort, no finalizers
"""


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_process_that_dies_before_close_leaves_no_file_at_path(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"out{suffix}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.stdout == "written\n", proc.stderr
    assert proc.returncode == 1
    assert not path.exists()
    leftovers = os.listdir(tmp_path)  # only the temp file, named after the output
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{path.name}.")


def test_open_sink_errors(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match=r"cannot tell the output format of .*out\.csv"):
        open_sink(tmp_path / "out.csv")
    assert isinstance(open_sink(tmp_path / "out.data", format="jsonl"), JsonlSink)
    with pytest.raises(SinkError, match="the folder .*nowhere does not exist"):
        open_sink(tmp_path / "nowhere" / "out.jsonl")
    with pytest.raises(SinkError, match="do not apply to JSON Lines"):
        open_sink(tmp_path / "out.jsonl", row_group_size=5)
    with pytest.raises(SinkError, match="row_group_size must be a positive int"):
        open_sink(tmp_path / "out.parquet", row_group_size=0)


# ---------------------------------------------------------------- Parquet


def test_parquet_writes_row_groups_of_n_rows_with_nested_values(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    write_all(ParquetSink(path, row_group_size=30), ROWS)
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [30, 30, 30, 10]
    schema = pq.read_schema(path)
    assert schema.field("meta").type == pa.struct(
        [
            ("model", pa.string()),
            ("tokens", pa.int64()),
            ("nested", pa.struct([("deep", pa.list_(pa.int64()))])),
        ]
    )
    assert schema.field("tags").type == pa.list_(pa.string())
    assert read_back(path) == ROWS


def test_parquet_schema_widens_when_later_rows_need_it(tmp_path: Path) -> None:
    rows = [{"id": i, "error": None, "score": i, "meta": {"a": i}} for i in range(10)]
    rows += [{"id": 10, "error": "timeout", "score": 0.5, "meta": {"a": 10, "b": "x"}}]
    rows += [{"id": 11, "score": 2, "extra": [1.5]}]  # a missing column, a new one
    path = tmp_path / "out.parquet"
    write_all(ParquetSink(path, row_group_size=5), rows)
    schema = pq.read_schema(path)
    assert schema.names == ["id", "error", "score", "meta", "extra"]
    assert schema.field("error").type == pa.string()  # was all null in the first groups
    assert schema.field("score").type == pa.float64()  # int, then a float
    assert schema.field("meta").type == pa.struct([("a", pa.int64()), ("b", pa.string())])
    assert pq.ParquetFile(path).metadata.num_row_groups == 3  # the rewrite kept the groups

    def widened(r: dict) -> dict:
        meta = r.get("meta")
        return {
            "id": r["id"],
            "error": r.get("error"),
            "score": float(r["score"]),
            "meta": None if meta is None else {"a": meta["a"], "b": meta.get("b")},
            "extra": r.get("extra"),
        }

    want = [widened(r) for r in rows]
    assert read_back(path) == want
    assert [f for f in os.listdir(tmp_path)] == ["out.parquet"]  # the old temp file is gone


def test_parquet_types_that_do_not_promote_are_an_error_naming_the_column(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "a.parquet", row_group_size=2)
    sink.write({"id": 1, "score": 5})
    sink.write({"id": 2, "score": 7})  # a group: score is int64
    sink.write({"id": 3, "score": "n/a"})
    with pytest.raises(SinkError, match=r"Field score has incompatible types: int64 vs string"):
        sink.write({"id": 4, "score": "n/a"})
    sink.abort()

    sink = ParquetSink(tmp_path / "b.parquet", row_group_size=3)
    sink.write({"label": "yes"})
    sink.write({"label": ["yes"]})
    with pytest.raises(SinkError, match=r"column 'label' \(rows 0\.\.2\)"):
        sink.write({"label": "no"})
    sink.abort()
    assert os.listdir(tmp_path) == []


def test_parquet_values_are_made_plain(tmp_path: Path) -> None:
    at = datetime.datetime(2026, 12, 2, 5, 30)
    path = tmp_path / "out.parquet"
    rows = [
        {
            "v": Verdict(ok=True, at=at, color=Color.RED),
            "span": Span(i, i + 1),
            "blob": bytes([i]),
            "when": at,
            "c": Color.RED,
        }
        for i in range(3)
    ]
    write_all(open_sink(path), rows)
    assert read_back(path) == [
        {
            "v": {"ok": True, "at": at, "color": "red"},
            "span": {"start": i, "end": i + 1},
            "blob": bytes([i]),
            "when": at,
            "c": "red",
        }
        for i in range(3)
    ]


def test_an_empty_parquet_sink_is_a_valid_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    ParquetSink(path).close()
    assert read_back(path) == []
    JsonlSink(tmp_path / "empty.jsonl").close()
    assert (tmp_path / "empty.jsonl").read_bytes() == b""


def test_parquet_sink_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    def peak_writing(n: int) -> int:
        path = tmp_path / f"rows{n}.parquet"
        tracemalloc.start()
        try:
            with ParquetSink(path, row_group_size=1000) as sink:
                for i in range(n):
                    sink.write({"id": i, "text": f"row {i} text", "score": i / 3})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert pq.ParquetFile(path).metadata.num_rows == n
        return peak

    peak_writing(10)  # first use: pyarrow's lazy imports are not the sink's memory
    small, large = peak_writing(5_000), peak_writing(50_000)
    # One row group buffered, not the dataset: buffering all rows costs ~10x more.
    assert large < small * 1.5, (small, large)
    assert large < 3_000_000, large


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match=r"Parquet files \(pyarrow\) .*plait\[data\]"):
        open_sink(tmp_path / "out.parquet")
    assert os.listdir(tmp_path) == []
