"""Datasets: lazy sources (JSON Lines, CSV, Parquet, a Hugging Face Dataset, any
iterable), atomic sinks (JSON Lines, Parquet), and the row runner that maps a
workflow over them (`plait.map`, `plait.stream`)."""

from plait.data._map import MapOptionError, MapResult, amap, aresume_map, map, resume_map, stream
from plait.data._readers import read_csv, read_jsonl, read_parquet
from plait.data._rows import DROP, Row, RowError
from plait.data._sinks import JsonlSink, ParquetSink, Sink, SinkError, open_sink
from plait.data._source_base import Source, SourceError, SourceRow
from plait.data._sources import from_dataset, from_iterable, open_source, reopen_source

__all__ = [
    "DROP",
    "JsonlSink",
    "MapOptionError",
    "MapResult",
    "ParquetSink",
    "Row",
    "RowError",
    "Sink",
    "SinkError",
    "Source",
    "SourceError",
    "SourceRow",
    "amap",
    "aresume_map",
    "from_dataset",
    "from_iterable",
    "map",
    "open_sink",
    "open_source",
    "read_csv",
    "read_jsonl",
    "read_parquet",
    "reopen_source",
    "resume_map",
    "stream",
]
