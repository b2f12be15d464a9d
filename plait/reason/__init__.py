"""Parallel reasoning threads: fork formats as data, a streaming fork parser, the
driver that runs a block's threads as concurrent LLM-call nodes and joins them
back byte for byte, and Parallel-Distill-Refine as a plain workflow.

See docs/reasoning.md.
"""

from plait.reason._api import areason, reason, reasoner
from plait.reason._formats import APR, ForkFormat, Multiverse, ThreadWeaver
from plait.reason._parser import ForkParser
from plait.reason._pdr import pdr
from plait.reason._records import Block, Chain, Reasoning, Segment, Thread

__all__ = [
    "APR",
    "Block",
    "Chain",
    "ForkFormat",
    "ForkParser",
    "Multiverse",
    "Reasoning",
    "Segment",
    "Thread",
    "ThreadWeaver",
    "areason",
    "pdr",
    "reason",
    "reasoner",
]
