"""Opening any accepted input as a `Source`, and reopening one from its recorded
description on resume; the in-memory sources (an iterable, a Hugging Face Dataset).

    open_source("corpus.jsonl")        # by suffix: .jsonl .ndjson .jsonl.gz .csv .tsv .parquet
    open_source(ds)                    # a datasets.Dataset
    open_source(row for row in rows)   # any iterable or async iterable of dicts
    reopen_source(source.description)  # what `plait resume` does
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

from plait.data._readers import read_csv, read_jsonl, read_parquet
from plait.data._source_base import Source, SourceError, SourceRow, SyncSource

ACCEPTED = (
    "a path to a .jsonl/.ndjson/.jsonl.gz, .csv/.tsv or .parquet file, a datasets.Dataset, "
    "an iterable or async iterable of dicts, or a Source (plait.read_jsonl(...), ...)"
)
_DATASET_BATCH = 256


# ---------------------------------------------------------------- iterables


class IterableSource:
    """Any iterable or async iterable of dicts, pulled one item per row (a
    generator is never read further than the rows taken). Positions are not stable
    across runs, so `fingerprint()` is None and a durable job needs a key column;
    it cannot be reopened from its description (pass it again)."""

    def __init__(self, items: Any):
        if not (hasattr(items, "__iter__") or hasattr(items, "__aiter__")):
            raise SourceError(
                f"from_iterable needs an iterable or async iterable; got {_kind(items)}"
            )
        self._items = items
        self.description = {"kind": "iterable", "type": _kind(items)}

    def fingerprint(self) -> None:
        return None

    def count_rows(self) -> int | None:
        """len() of a sized collection; None for an iterator (counting would consume it)."""
        try:
            return len(self._items)
        except TypeError:  # no len(), or one that refuses (a streamed dataset)
            return None

    def __iter__(self) -> Iterator[SourceRow]:
        return self.iter_rows()

    def iter_rows(self, start: int = 0) -> Iterator[SourceRow]:
        if not hasattr(self._items, "__iter__"):
            raise SourceError(
                f"{_kind(self._items)} is an async iterable: read it with "
                "`async for row in source.aiter_rows()`"
            )
        for ordinal, item in enumerate(self._items):
            if ordinal >= start:
                yield _item_row(ordinal, item)

    async def aiter_rows(self, start: int = 0) -> AsyncIterator[SourceRow]:
        if not hasattr(self._items, "__aiter__"):
            for row in self.iter_rows(start):
                yield row
            return
        ordinal = 0
        async for item in self._items:
            if ordinal >= start:
                yield _item_row(ordinal, item)
            ordinal += 1

    def __repr__(self) -> str:
        return f"IterableSource({self.description['type']})"


def _item_row(ordinal: int, item: Any) -> SourceRow:
    if isinstance(item, dict):
        return SourceRow(ordinal, item)
    if isinstance(item, Mapping):
        return SourceRow(ordinal, dict(item))
    return SourceRow(ordinal, None, f"item {ordinal}: not a dict ({_kind(item)})")


def from_iterable(items: Any) -> IterableSource:
    """Any iterable or async iterable of dicts as a source, read lazily. An item
    that is not a dict is a row error."""
    return IterableSource(items)


# ---------------------------------------------------------------- datasets.Dataset


class DatasetSource(SyncSource):
    """A Hugging Face `datasets.Dataset`, read in slices of a few hundred rows
    (Arrow-backed, memory-mapped: never converted whole). Its fingerprint is the
    dataset's own. It reopens on resume only when it was loaded with
    `datasets.load_from_disk(DIR)` unchanged: the description then records DIR."""

    def __init__(self, dataset: Any):
        self._ds = dataset
        self.description = {
            "kind": "dataset",
            "path": _saved_dir(dataset),
            "fingerprint": dataset._fingerprint,
            "num_rows": len(dataset),
        }

    def fingerprint(self) -> str:
        return "datasets:" + self._ds._fingerprint

    def count_rows(self) -> int:
        return len(self._ds)

    def iter_rows(self, start: int = 0) -> Iterator[SourceRow]:
        ds, n = self._ds, len(self._ds)
        for lo in range(start, n, _DATASET_BATCH):
            hi = min(lo + _DATASET_BATCH, n)
            try:
                columns = ds[lo:hi]
                values = zip(*columns.values(), strict=True)
                rows = [dict(zip(columns, v, strict=True)) for v in values]
                rows = rows or [{} for _ in range(lo, hi)]  # a dataset without columns
            except Exception:  # noqa: BLE001 - a value that cannot be converted: find its row
                yield from (self._one(i) for i in range(lo, hi))
                continue
            for i, data in enumerate(rows, lo):
                yield SourceRow(i, data)

    def _one(self, i: int) -> SourceRow:
        try:
            return SourceRow(i, dict(self._ds[i]))
        except Exception as e:  # noqa: BLE001 - the row's own failure, not the job's
            return SourceRow(i, None, f"row {i}: cannot be converted ({e})")


def _saved_dir(dataset: Any) -> str | None:
    """The `save_to_disk` folder this dataset was loaded from unchanged, or None:
    in memory, or transformed since (selected, mapped, formatted), so that nothing
    on disk reproduces it. Checked the direct way: loading the folder again gives
    the same fingerprint (a memory-mapped load: milliseconds)."""
    files = [Path(f["filename"]) for f in getattr(dataset, "cache_files", None) or []]
    folder = files[0].parent if files else None
    if folder is None or not (folder / "state.json").is_file():
        return None
    datasets = sys.modules.get("datasets")
    try:
        again = datasets.load_from_disk(str(folder))  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - not a folder datasets can load: not reopenable
        return None
    return str(folder.absolute()) if again._fingerprint == dataset._fingerprint else None


def from_dataset(dataset: Any) -> DatasetSource:
    """A Hugging Face `datasets.Dataset` as a source, read lazily; its fingerprint
    is the dataset's. (An IterableDataset is an iterable: use from_iterable.)"""
    if not (hasattr(dataset, "_fingerprint") and hasattr(dataset, "cache_files")):
        raise SourceError(f"from_dataset needs a datasets.Dataset; got {_kind(dataset)}")
    return DatasetSource(dataset)


# ---------------------------------------------------------------- open / reopen

_BY_SUFFIX = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json-lines": read_jsonl,
    ".jsonl.gz": read_jsonl,
    ".ndjson.gz": read_jsonl,
    ".csv": read_csv,
    ".tsv": read_csv,
    ".parquet": read_parquet,
    ".pq": read_parquet,
}


def open_source(obj: Any, **options: Any) -> Source:
    """Whatever a job reads, as a Source: a path (its format by suffix; `options`
    go to its reader, e.g. max_row_bytes, delimiter, batch_size), a Source as it
    is, a datasets.Dataset, or an (async) iterable of dicts."""
    if isinstance(obj, str | os.PathLike):
        return _open_path(Path(obj), options)
    if options:
        raise SourceError(
            f"options {', '.join(sorted(options))} apply to a file path only; got {_kind(obj)}"
        )
    if isinstance(obj, Source):
        return obj
    datasets = sys.modules.get("datasets")  # a Dataset exists only if datasets is imported
    if datasets is not None and isinstance(obj, datasets.Dataset):
        return from_dataset(obj)
    if type(obj).__module__.partition(".")[0] == "pandas":
        raise SourceError(
            "a pandas object is not a source: pass datasets.Dataset.from_pandas(df) "
            "or df.to_dict('records')"
        )
    if isinstance(obj, Mapping):
        raise SourceError(f"a dict is one row, not a source: pass a list of dicts ({ACCEPTED})")
    if isinstance(obj, bytes | bytearray | memoryview):
        raise SourceError(f"bytes are not a source: write them to a file first ({ACCEPTED})")
    if hasattr(obj, "__iter__") or hasattr(obj, "__aiter__"):
        return from_iterable(obj)
    raise SourceError(f"cannot read rows from {_kind(obj)}: a source is {ACCEPTED}")


def _open_path(path: Path, options: dict[str, Any]) -> Source:
    name = path.name.lower()
    suffix = next((s for s in sorted(_BY_SUFFIX, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None:
        hint = (
            ": a .json file is one document, not streamed; write one object per line (.jsonl)"
            if name.endswith(".json")
            else ""
        )
        raise SourceError(
            f"cannot tell the format of {path} from its suffix{hint}; a source file is "
            ".jsonl/.ndjson/.jsonl.gz (JSON Lines), .csv/.tsv or .parquet "
            "(or call plait.read_jsonl / read_csv / read_parquet on it)"
        )
    reader = _BY_SUFFIX[suffix]
    if suffix == ".tsv":
        options = {"delimiter": "\t", **options}
    try:
        return reader(path, **options)
    except TypeError as e:
        raise SourceError(f"{path}: {e} (options for {reader.__name__})") from None


def reopen_source(description: Mapping[str, Any]) -> Source:
    """The source a run read, opened again from its recorded `description` (for
    resume). Raises SourceError when it cannot be: the file is gone, or the source
    was in memory (an iterable, a Dataset never saved) and must be passed again."""
    kind = description.get("kind")
    opts = {k: v for k, v in description.items() if k not in ("kind", "path")}
    try:
        if kind == "jsonl":
            return read_jsonl(description["path"], **opts)
        if kind == "csv":
            csv_options = opts["csv_options"]
            return read_csv(description["path"], max_row_bytes=opts["max_row_bytes"], **csv_options)
        if kind == "parquet":
            return read_parquet(description["path"], **opts)
    except SourceError as e:
        raise SourceError(f"cannot reopen the run's source: {e}") from None
    except (KeyError, TypeError) as e:
        raise SourceError(f"not a source description: {dict(description)} ({e!r})") from None
    if kind == "dataset":
        return _reopen_dataset(description)
    if kind == "iterable":
        raise SourceError(
            f"the run read an in-memory iterable ({description.get('type')}): it cannot be "
            "reopened; pass the same rows again"
        )
    raise SourceError(f"not a source description: {dict(description)}")


def _reopen_dataset(description: Mapping[str, Any]) -> Source:
    folder = description.get("path")
    if folder is None:
        raise SourceError(
            "the run read a datasets.Dataset held in memory: it cannot be reopened. Pass "
            "the same dataset again, or save it (ds.save_to_disk(DIR)) and read "
            "datasets.load_from_disk(DIR), which a resume can reopen"
        )
    if not Path(folder).is_dir():
        raise SourceError(f"cannot reopen the run's source: saved dataset not found: {folder}")
    try:
        import datasets
    except ImportError:
        raise SourceError(
            f"reopening the saved dataset {folder} needs the datasets package: pip install datasets"
        ) from None
    return from_dataset(datasets.load_from_disk(folder))


def _kind(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
