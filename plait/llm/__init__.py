"""LLM backends behind one small protocol: OpenAI-compatible HTTP, a local
GGUF model (llama.cpp in-process), and a simulated model with controlled timing.

    llm = get_llm("sim:ttft=0.1,tps=100")      # or "local", "openai:gpt-4o-mini"
    async for delta in llm.stream([Message("user", "hi")]): ...
"""

from plait.llm._local import LocalLLM
from plait.llm._openai import DIALECTS, OpenAILLM
from plait.llm._protocol import (
    LLM,
    BaseLLM,
    Completion,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOptionError,
    LLMProtocolError,
    LLMStream,
    LLMTimeout,
    LLMTruncated,
    Message,
    MissingExtraError,
    ToolCall,
    UnknownModelSpec,
    Usage,
)
from plait.llm._ratelimit import RateLimiter
from plait.llm._sim import Fault, SimLLM, SimScript
from plait.llm._sim_server import SimServer
from plait.llm._spec import get_llm

__all__ = [
    "DIALECTS",
    "LLM",
    "BaseLLM",
    "Completion",
    "Fault",
    "LLMConnectionError",
    "LLMError",
    "LLMHTTPError",
    "LLMOptionError",
    "LLMProtocolError",
    "LLMStream",
    "LLMTimeout",
    "LLMTruncated",
    "LocalLLM",
    "Message",
    "MissingExtraError",
    "OpenAILLM",
    "RateLimiter",
    "SimLLM",
    "SimScript",
    "SimServer",
    "ToolCall",
    "UnknownModelSpec",
    "Usage",
    "get_llm",
]
