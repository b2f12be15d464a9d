"""Dataset sources on real files: lazy reading, bad rows as row errors at the right
ordinal, fingerprints, reopening from a description, every accepted input."""

from __future__ import annotations

import asyncio
import csv
import datetime
import gzip
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plait.data import (
    Source,
    SourceError,
    SourceRow,
    from_dataset,
    from_iterable,
    open_source,
    read_csv,
    read_jsonl,
    read_parquet,
    reopen_source,
)
from plait.llm import MissingExtraError

ROOT = Path(__file__).resolve().parents[2]


def rows_of(source: Source) -> list[SourceRow]:
    return list(source)  # type: ignore[call-overload]


def data_of(source: Source) -> list[dict | None]:
    return [r.data for r in rows_of(source)]


def arows(source: Source, start: int = 0) -> list[SourceRow]:
    async def pull() -> list[SourceRow]:
        return [r async for r in source.aiter_rows(start)]

    return asyncio.run(pull())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def write_csv(path: Path, rows: list[dict], **options: object) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), **options)  # type: ignore[arg-type]
        w.writeheader()
        w.writerows(rows)
    return path


ROWS = [{"id": i, "text": f"row {i} é 😀", "tags": ["a", str(i)], "n": None} for i in range(50)]


# ---------------------------------------------------------------- JSON Lines


def test_jsonl_reads_every_row_in_order(tmp_path: Path) -> None:
    src = read_jsonl(write_jsonl(tmp_path / "a.jsonl", ROWS))
    got = rows_of(src)
    assert [r.ordinal for r in got] == list(range(50))
    assert [r.data for r in got] == ROWS
    assert all(r.error is None for r in got)
    assert rows_of(src) == got  # a file source reads again from the start


def test_jsonl_bad_rows_are_row_errors_and_the_rows_after_still_come(tmp_path: Path) -> None:
    big = b'{"x": "' + b"z" * 400_000 + b'"}'
    lines = [
        b'{"id": 0}',
        b"",  # blank: skipped, takes no ordinal
        b"[1, 2]",
        b'{"id": "caf\xe9"}',  # latin-1, not UTF-8
        b"{not json",
        b"   \t",  # blank too
        big,
        b'"just a string"',
        b'{"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"id": 7}',
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines))  # the last line has no newline
    got = rows_of(read_jsonl(path, max_row_bytes=300_000))
    assert [(r.ordinal, r.data, r.error) for r in got] == [
        (0, {"id": 0}, None),
        (1, None, "line 3: not a JSON object (an array)"),
        (2, None, "line 4: not valid UTF-8 (byte 0xe9 at column 12)"),
        (
            3,
            None,
            (
                "line 5: not valid JSON (Expecting property name enclosed in double quotes"
                " at column 2)"
            ),
        ),
        (4, None, "line 7: 400 kB, over max_row_bytes (300 kB)"),
        (5, None, "line 8: not a JSON object (a string)"),
        (6, None, "line 9: not valid JSON (nested too deeply)"),
        (7, {"id": 7}, None),
    ]


def test_jsonl_max_row_bytes_is_exact_and_counts_the_line_without_its_newline(
    tmp_path: Path,
) -> None:
    fits = b'{"x": "' + b"a" * 93 + b'"}'  # 102 bytes
    over = b'{"x": "' + b"a" * 94 + b'"}'  # 103 bytes
    path = tmp_path / "edge.jsonl"
    path.write_bytes(fits + b"\r\n" + over + b"\n" + fits)
    got = rows_of(read_jsonl(path, max_row_bytes=102))
    assert [r.error for r in got] == [
        None,
        "line 2: 103 bytes, over max_row_bytes (102 bytes)",
        None,
    ]


def test_a_huge_line_is_drained_not_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"id": 0}\n{"v": "')
        for _ in range(20):  # a 20 MB value
            f.write(b"x" * 1_000_000)
        f.write(b'"}\n{"id": 2}\n')
    tracemalloc.start()
    try:
        got = rows_of(read_jsonl(path, max_row_bytes=100_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.data for r in got] == [{"id": 0}, None, {"id": 2}]
    assert got[1].error == "line 2: 20 MB, over max_row_bytes (100 kB)"
    assert peak < 4_000_000, peak  # chunks of 1 MB, never the 20 MB line


def test_jsonl_bom_and_gzip(tmp_path: Path) -> None:
    plain = tmp_path / "bom.jsonl"
    plain.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"a": 2}\n')
    assert data_of(read_jsonl(plain)) == [{"a": 1}, {"a": 2}]
    gz = tmp_path / "rows.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write(b"".join(json.dumps(r).encode() + b"\n" for r in ROWS))
    src = open_source(gz)
    assert data_of(src) == ROWS
    assert data_of(reopen_source(json.loads(json.dumps(src.description)))) == ROWS
    (tmp_path / "fake.jsonl.gz").write_bytes(b'{"a": 1}\n')
    with pytest.raises(OSError, match="gzip"):
        read_jsonl(tmp_path / "fake.jsonl.gz")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gz.read_bytes()[:-30])  # a download that stopped short
    with pytest.raises(SourceError, match=r"cut\.jsonl\.gz cannot be read after line 4\d"):
        list(read_jsonl(cut))


def test_a_200k_line_file_is_read_in_bounded_memory(tmp_path: Path) -> None:
    def peak_reading(n: int) -> int:
        path = tmp_path / f"rows{n}.jsonl"
        with open(path, "w") as f:
            for i in range(n):
                f.write(f'{{"id": {i}, "text": "some text for row {i}"}}\n')
        tracemalloc.start()
        try:
            count = 0
            for row in read_jsonl(path):
                count += row.data is not None
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert count == n
        return peak

    peak_reading(10)  # first use: one-time allocations are not the reader's memory
    small, large = peak_reading(20_000), peak_reading(200_000)
    # A file held in memory would cost ~10 MB more at 200k rows than at 20k.
    assert large < small * 1.5 + 100_000, (small, large)
    assert large < 1_000_000, large


# ---------------------------------------------------------------- CSV


def test_csv_round_trip_values_are_strings(tmp_path: Path) -> None:
    rows = [{"id": str(i), "text": f'say "hi",\nthen {i} é'} for i in range(30)]
    src = read_csv(write_csv(tmp_path / "a.csv", rows))
    assert data_of(src) == rows
    assert src.columns == ["id", "text"]
    semi = write_csv(tmp_path / "b.csv", rows, delimiter=";")
    assert data_of(read_csv(semi, delimiter=";")) == rows
    assert data_of(open_source(semi, delimiter=";")) == rows


def test_csv_bad_rows_are_row_errors_and_the_rows_after_still_come(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"id,text\n"
        b"0,zero\n"
        b"\n"  # blank: skipped
        b"1\n"  # too few fields
        b"2,two,extra\n"  # too many
        b"3,caf\xe9\n"  # not UTF-8
        b'4,"' + b"x" * 3000 + b'"\n'  # over max_row_bytes, quoted
        b'5,"a long value\n' + b"y" * 3000 + b'\nending here"\n'  # over, on three lines
        b'6,"six\nlines"\n'  # a quoted newline: one row
        b"7,seven\n"
    )
    got = rows_of(read_csv(path, max_row_bytes=1000))
    assert [(r.ordinal, r.data, r.error) for r in got] == [
        (0, {"id": "0", "text": "zero"}, None),
        (1, None, "line 4: 1 field, the header has 2"),
        (2, None, "line 5: 3 fields, the header has 2"),
        (3, None, "line 6: not valid UTF-8"),
        (4, None, "line 7: 3 kB, over max_row_bytes (1 kB)"),
        (5, None, "line 8: 3.03 kB, over max_row_bytes (1 kB)"),
        (6, {"id": "6", "text": "six\nlines"}, None),
        (7, {"id": "7", "text": "seven"}, None),
    ]


def test_csv_a_huge_quoted_line_does_not_swallow_the_rows_after_it(tmp_path: Path) -> None:
    # The line is over the limit in the middle of a quoted field: the reader drops
    # it but keeps its quoting state, so row 2 is still parsed as its own row.
    path = tmp_path / "quoted.csv"
    path.write_bytes(
        b"a,b\n1,x\n"
        b'2,"' + b'q""' * 2000 + b'"\n'  # even quotes: the line ends outside quotes
        b'3,"opens here' + b"q" * 2000 + b'\nand ends here"\n'  # odd: it ends inside
        b"4,y\n"
    )
    got = rows_of(read_csv(path, max_row_bytes=500))
    assert [r.data for r in got] == [{"a": "1", "b": "x"}, None, None, {"a": "4", "b": "y"}]
    assert [r.error for r in got[1:3]] == [
        "line 3: 6 kB, over max_row_bytes (500 bytes)",
        "line 4: 2.03 kB, over max_row_bytes (500 bytes)",
    ]


def test_csv_fields_over_the_csv_modules_default_limit_are_fine(tmp_path: Path) -> None:
    rows = [{"k": "1", "v": "w" * 300_000}]  # over csv's 128 KiB default field limit
    assert data_of(read_csv(write_csv(tmp_path / "wide.csv", rows))) == rows


def test_csv_an_unusable_header_fails_at_open(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(SourceError, match="empty: it needs a header row"):
        read_csv(tmp_path / "empty.csv")
    (tmp_path / "dup.csv").write_bytes(b"a,b,a\n1,2,3\n")
    with pytest.raises(SourceError, match="name each column once; 'a' repeated"):
        read_csv(tmp_path / "dup.csv")
    (tmp_path / "latin.csv").write_bytes(b"caf\xe9,b\n1,2\n")
    with pytest.raises(SourceError, match="header row is not valid UTF-8"):
        read_csv(tmp_path / "latin.csv")
    with pytest.raises(SourceError, match="unknown CSV option encoding"):
        read_csv(tmp_path / "dup.csv", encoding="latin-1")
    with pytest.raises(SourceError, match="plain values"):
        read_csv(tmp_path / "dup.csv", dialect=csv.excel_tab)


# ---------------------------------------------------------------- Parquet


def test_parquet_reads_batches_across_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path, row_group_size=7)
    src = read_parquet(path, batch_size=3)
    assert data_of(src) == ROWS
    assert src.num_rows == 50
    for start in (0, 6, 7, 8, 49, 50, 60):  # inside, at and past group edges
        assert [r.ordinal for r in src.iter_rows(start)] == list(range(start, 50))
        assert [r.data for r in src.iter_rows(start)] == ROWS[start:]


def test_parquet_a_value_python_cannot_hold_is_a_row_error(tmp_path: Path) -> None:
    # Year 10000 fits in an Arrow timestamp but not in a Python datetime.
    ms = [0, 253402300800 * 1000, 1000]
    table = pa.table({"t": pa.array(ms, type=pa.timestamp("ms")), "i": [0, 1, 2]})
    path = tmp_path / "dates.parquet"
    pq.write_table(table, path)
    got = rows_of(read_parquet(path))
    assert got[0] == SourceRow(0, {"t": datetime.datetime(1970, 1, 1), "i": 0})
    assert got[1].data is None and got[1].error is not None
    assert got[1].error.startswith("row 1: cannot be converted")
    assert got[2] == SourceRow(2, {"t": datetime.datetime(1970, 1, 1, 0, 0, 1), "i": 2})


def test_parquet_a_corrupt_row_group_gives_errors_for_its_rows_only(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    rows = [{"i": i, "s": f"value {i}" * 20} for i in range(30)]
    pq.write_table(
        pa.Table.from_pylist(rows),
        path,
        row_group_size=10,
        compression="none",
        use_dictionary=False,
    )
    meta = pq.ParquetFile(path).metadata
    col = meta.row_group(1).column(1)  # the string column of the second group
    start, size = col.data_page_offset, col.total_compressed_size
    data = bytearray(path.read_bytes())
    data[start : start + size] = b"\xff" * size  # its pages are garbage now
    path.write_bytes(bytes(data))
    got = rows_of(read_parquet(path))
    assert [r.ordinal for r in got] == list(range(30))
    assert [r.data for r in got[:10]] == rows[:10]
    assert all(r.data is None and "row group 1" in (r.error or "") for r in got[10:20])
    assert [r.data for r in got[20:]] == rows[20:]


def test_parquet_not_a_parquet_file_fails_at_open(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        read_parquet(tmp_path / "x.parquet")


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'plait\[data\]'"):
        read_parquet(path)


def test_importing_plait_data_does_not_import_pyarrow() -> None:
    code = "import sys, plait.data; assert 'pyarrow' not in sys.modules, 'imported'"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ---------------------------------------------------------------- fingerprints, reopen


def test_fingerprint_follows_the_content_only(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", ROWS)
    src = read_jsonl(path)
    before = src.fingerprint()
    assert before is not None and before.startswith("sha256:")
    os.utime(path, (0, 0))  # touched, same bytes
    assert src.fingerprint() == before
    copy = tmp_path / "copy.jsonl"
    shutil.copy(path, copy)
    assert read_jsonl(copy).fingerprint() == before
    with open(path, "a") as f:
        f.write('{"id": 50}\n')
    assert src.fingerprint() != before
    path.write_bytes(path.read_bytes().replace(b'"id": 3,', b'"id": 4,', 1))  # same size
    assert read_jsonl(path).fingerprint() not in (before, None)
    assert from_iterable([{"a": 1}]).fingerprint() is None


@pytest.mark.parametrize("kind", ["jsonl", "csv", "tsv", "parquet"])
def test_reopen_from_the_description_gives_the_same_rows(tmp_path: Path, kind: str) -> None:
    if kind == "parquet":
        path = tmp_path / "a.parquet"
        pq.write_table(pa.Table.from_pylist(ROWS), path, row_group_size=9)
        src = open_source(path, batch_size=4)
    elif kind == "jsonl":
        src = open_source(write_jsonl(tmp_path / "a.jsonl", ROWS), max_row_bytes=500)
    else:
        rows = [{"id": str(r["id"]), "text": r["text"]} for r in ROWS]
        delimiter = "\t" if kind == "tsv" else "|"
        path = write_csv(tmp_path / f"a.{kind}", rows, delimiter=delimiter)
        src = open_source(path) if kind == "tsv" else open_source(path, delimiter="|")
    description = json.loads(json.dumps(src.description))  # as stored in a journal
    assert Path(description["path"]).is_absolute()
    again = reopen_source(description)
    assert again.description == src.description
    assert rows_of(again) == rows_of(src)
    assert again.fingerprint() == src.fingerprint()
    assert len(rows_of(src)) == 50


def test_reopen_errors_are_clear(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gone.jsonl", ROWS)
    description = read_jsonl(path).description
    path.unlink()
    with pytest.raises(SourceError, match=f"cannot reopen the run's source: .*not found: {path}"):
        reopen_source(description)
    with pytest.raises(SourceError, match="in-memory iterable .*pass the same rows again"):
        reopen_source(from_iterable(iter([{"a": 1}])).description)
    with pytest.raises(SourceError, match="not a source description"):
        reopen_source({"kind": "spreadsheet"})


# ---------------------------------------------------------------- iterables


def test_a_generator_is_pulled_only_as_far_as_consumed() -> None:
    pulled = []

    def gen() -> Iterator[dict]:
        for i in range(1000):
            pulled.append(i)
            yield {"i": i}

    rows = iter(from_iterable(gen()))
    first = [next(rows) for _ in range(5)]
    assert [r.data for r in first] == [{"i": i} for i in range(5)]
    assert pulled == [0, 1, 2, 3, 4]


def test_an_async_generator_is_pulled_only_as_far_as_consumed() -> None:
    pulled = []

    async def agen() -> AsyncIterator[dict]:
        for i in range(1000):
            pulled.append(i)
            await asyncio.sleep(0)
            yield {"i": i}

    async def take(n: int) -> list[SourceRow]:
        source = open_source(agen())
        it = source.aiter_rows()
        return [await anext(it) for _ in range(n)]

    got = asyncio.run(take(3))
    assert [(r.ordinal, r.data) for r in got] == [(0, {"i": 0}), (1, {"i": 1}), (2, {"i": 2})]
    assert pulled == [0, 1, 2]
    with pytest.raises(SourceError, match="async iterable: read it with `async for"):
        list(from_iterable(agen()))


def test_iterable_items_that_are_not_dicts_are_row_errors() -> None:
    got = rows_of(from_iterable([{"a": 1}, "text", None, {"a": 2}]))
    assert [(r.ordinal, r.data, r.error) for r in got] == [
        (0, {"a": 1}, None),
        (1, None, "item 1: not a dict (str)"),
        (2, None, "item 2: not a dict (NoneType)"),
        (3, {"a": 2}, None),
    ]


def test_every_source_reads_asynchronously_from_any_start(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path, row_group_size=8)
    sources = [
        read_jsonl(write_jsonl(tmp_path / "a.jsonl", ROWS)),
        read_parquet(path),
        from_iterable(ROWS),
    ]
    for src in sources:
        assert [r.data for r in arows(src)] == ROWS
        assert [(r.ordinal, r.data) for r in arows(src, 45)] == list(enumerate(ROWS))[45:]


def test_csv_and_jsonl_start_skips_rows_but_keeps_their_ordinals(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"i": 0}\n\n{"i": 1}\n[]\n\n{"i": 3}\n')
    src = read_jsonl(path)
    assert [(r.ordinal, r.data) for r in src.iter_rows(2)] == [(2, None), (3, {"i": 3})]
    csv_path = tmp_path / "gaps.csv"
    csv_path.write_text("i\n0\n\n1\n2\n")
    assert [(r.ordinal, r.data) for r in read_csv(csv_path).iter_rows(1)] == [
        (1, {"i": "1"}),
        (2, {"i": "2"}),
    ]


# ---------------------------------------------------------------- datasets.Dataset


def test_a_hugging_face_dataset_is_read_lazily_from_any_start(tmp_path: Path) -> None:
    import datasets  # in the `test` extra: a missing one fails here, never skips

    rows = [{"id": i, "text": f"t{i}", "tags": [i, i + 1]} for i in range(600)]
    ds = datasets.Dataset.from_list(rows)
    src = open_source(ds)
    assert src.fingerprint() == "datasets:" + ds._fingerprint
    assert data_of(src) == rows
    assert [r.ordinal for r in src.iter_rows(250)] == list(range(250, 600))
    assert [r.data for r in arows(src, 599)] == rows[599:]
    picked = ds.select([5, 3, 1])  # an indices mapping
    assert data_of(from_dataset(picked)) == [rows[5], rows[3], rows[1]]
    assert open_source(ds.map(lambda r: {"id": r["id"] * 2})).fingerprint() != src.fingerprint()
    with pytest.raises(SourceError, match="held in memory: it cannot be reopened"):
        reopen_source(src.description)

    ds.save_to_disk(tmp_path / "saved")
    loaded = datasets.load_from_disk(str(tmp_path / "saved"))
    saved = from_dataset(loaded)
    assert saved.description["path"] == str(tmp_path / "saved")
    again = reopen_source(json.loads(json.dumps(saved.description)))
    assert again.fingerprint() == saved.fingerprint()
    assert data_of(again) == rows
    streamed = ds.to_iterable_dataset()  # an IterableDataset is an iterable of dicts
    assert data_of(open_source(streamed)) == rows
    assert open_source(streamed).fingerprint() is None
    # A transformed dataset is no longer what the folder holds: not reopenable.
    for changed in (loaded.select(range(10)), loaded.with_format("numpy"), loaded.shuffle(1)):
        assert from_dataset(changed).description["path"] is None


# ---------------------------------------------------------------- open_source


def test_open_source_by_suffix_and_its_errors(tmp_path: Path) -> None:
    j = write_jsonl(tmp_path / "a.ndjson", ROWS[:2])
    assert data_of(open_source(str(j))) == ROWS[:2]
    src = read_jsonl(j)
    assert open_source(src) is src
    assert data_of(open_source([{"a": 1}])) == [{"a": 1}]
    assert data_of(open_source(r for r in ROWS[:3])) == ROWS[:3]

    (tmp_path / "a.json").write_text("[]")
    with pytest.raises(SourceError, match="one document, not streamed"):
        open_source(tmp_path / "a.json")
    with pytest.raises(SourceError, match=r"cannot tell the format of .*a\.xlsx"):
        open_source(tmp_path / "a.xlsx")
    with pytest.raises(SourceError, match="JSON Lines file not found: .*missing.jsonl"):
        open_source(tmp_path / "missing.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(SourceError, match="is not a file"):
        open_source(tmp_path / "dir.jsonl")
    with pytest.raises(SourceError, match="batch_size"):
        open_source(j, batch_size=10)
    with pytest.raises(SourceError, match="a dict is one row"):
        open_source({"a": 1})
    with pytest.raises(SourceError, match="cannot read rows from int: a source is a path"):
        open_source(42)
    with pytest.raises(SourceError, match="apply to a file path only"):
        open_source([{"a": 1}], max_row_bytes=10)
    with pytest.raises(SourceError, match="max_row_bytes must be a positive int"):
        read_jsonl(j, max_row_bytes=0)


def test_count_rows_matches_the_rows_read(tmp_path: Path) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b'{"a": 1}\n\n[1]\n\xff\n' + b"z" * 300 + b'\n  \n{"a": 2}')
    csv_path = tmp_path / "a.csv"
    csv_path.write_bytes(b'a,b\n1,"two\nlines"\n\n3\n4,' + b"w" * 300 + b"\n5,6")
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet, row_group_size=7)
    sources = [
        read_jsonl(jsonl, max_row_bytes=100),
        read_csv(csv_path, max_row_bytes=100),
        read_parquet(parquet),
        from_iterable(ROWS),
    ]
    for src in sources:
        assert src.count_rows() == len(rows_of(src)), src
    assert [src.count_rows() for src in sources] == [5, 4, 50, 50]
    gen = (r for r in ROWS)
    assert from_iterable(gen).count_rows() is None
    assert next(gen) == ROWS[0]  # not consumed by asking
