"""Tools for `plait ask --tools examples/my_tools.py`.

Every `@plait.tool` in the module is offered to the planner, nothing else: here
the bundled `lookup` (imported, so offered too) and a unit conversion. The
planner sees each tool's signature and docstring, so say what it returns.
"""

from __future__ import annotations

import plait
from plait.examples.tools import lookup

__all__ = ["lookup", "to_feet"]


@plait.tool
def to_feet(metres: float) -> float:
    """A length in metres, converted to feet.

    Args:
        metres: the length in metres, e.g. a height from lookup(...)
    """
    return round(metres / 0.3048, 1)
