"""The LLM compiler (LLMCompiler, Kim et al. 2023): plan, dispatch eagerly, join.

    answer = plait.compiler.ask("Which is taller, Mount Everest or K2?",
                                tools=plait.examples.tools, model="local")

A planner LLM streams a numbered plan of tool calls (`1. search("K2")`, `$N`
references, `N. join()`); each line becomes a node of a plait run as soon as it
is parsed, and runs as soon as its inputs are done. A joiner then answers or
asks for a new plan. `mode="react"` runs the ReAct baseline with the same tools,
`mode="tools"` the model's own parallel function calling (OpenAI `tools`).
"""

from plait.compiler._ask import MODES, aask, ask, tools_of
from plait.compiler._grammar import plan_grammar, react_grammar
from plait.compiler._joiner import decision_grammar, parse_decision
from plait.compiler._parser import ParsedTask, PlanError, PlanParser, parse_call, parse_plan
from plait.compiler._prompt import joiner_messages, planner_messages
from plait.compiler._rows import Asker, asker
from plait.compiler._speculate import (
    Candidate,
    Context,
    Speculator,
    draft,
    question,
)
from plait.compiler._records import (
    Answer,
    CompilerEvent,
    Decided,
    Decision,
    GuessStarted,
    JoinerStarted,
    LLMCall,
    PlanFinished,
    PlanProblem,
    PlanRecord,
    PlanStarted,
    PlanText,
    SpeculationStats,
    TaskDispatched,
    TaskResult,
)

__all__ = [
    "MODES",
    "Answer",
    "Asker",
    "Candidate",
    "Context",
    "CompilerEvent",
    "Decided",
    "Decision",
    "GuessStarted",
    "JoinerStarted",
    "LLMCall",
    "ParsedTask",
    "PlanError",
    "PlanFinished",
    "PlanParser",
    "PlanProblem",
    "PlanRecord",
    "PlanStarted",
    "PlanText",
    "SpeculationStats",
    "Speculator",
    "TaskDispatched",
    "TaskResult",
    "aask",
    "ask",
    "asker",
    "decision_grammar",
    "draft",
    "joiner_messages",
    "parse_call",
    "parse_decision",
    "parse_plan",
    "plan_grammar",
    "planner_messages",
    "question",
    "react_grammar",
    "tools_of",
]
