"""Datasets in and out of a job: lazy sources (JSON Lines, CSV, Parquet, a Hugging
Face Dataset, any iterable) and atomic sinks (JSON Lines, Parquet)."""

from plait.data._readers import read_csv, read_jsonl, read_parquet
from plait.data._sinks import JsonlSink, ParquetSink, Sink, SinkError, open_sink
from plait.data._source_base import Source, SourceError, SourceRow
from plait.data._sources import from_dataset, from_iterable, open_source, reopen_source

__all__ = [
    "JsonlSink",
    "ParquetSink",
    "Sink",
    "SinkError",
    "Source",
    "SourceError",
    "SourceRow",
    "from_dataset",
    "from_iterable",
    "open_sink",
    "open_source",
    "read_csv",
    "read_jsonl",
    "read_parquet",
    "reopen_source",
]
