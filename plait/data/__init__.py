"""Datasets: sources and sinks, and the row runner (`plait.map`, `plait.stream`)."""

from plait.data._map import MapOptionError, MapResult, amap, aresume_map, map, resume_map, stream
from plait.data._rows import DROP, Row, RowError

__all__ = [
    "DROP",
    "MapOptionError",
    "MapResult",
    "Row",
    "RowError",
    "amap",
    "aresume_map",
    "map",
    "resume_map",
    "stream",
]
