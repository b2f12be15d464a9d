"""The plan language and its streaming parser: every case, one at a time."""

from __future__ import annotations

import pytest

from plait import Ref, Template
from plait.compiler import ParsedTask, PlanError, PlanParser, parse_call, parse_plan
from plait.compiler._parser import SyntaxProblem

from .conftest import TOOLS


def tasks_and_errors(text: str, **options):
    """Parse `text` as lines of a plan. Most cases here are fragments without a
    join(): their "incomplete" error is checked, then left out of `errors`."""
    tasks, errors, joined = parse_plan(text, options.pop("tools", TOOLS), **options)
    if not joined:
        assert errors and errors[-1].kind == "incomplete", errors
        errors = errors[:-1]
    return tasks, errors, joined


def kinds(errors):
    return [e.kind for e in errors]


def test_a_plain_plan():
    tasks, errors, joined = tasks_and_errors(
        '1. search("Mount Everest")\n2. search(\'K2\')\n3. add($1, $2)\n4. join()\n'
    )
    assert errors == [] and joined
    assert [(t.number, t.tool) for t in tasks] == [(1, "search"), (2, "search"), (3, "add")]
    assert tasks[0].arguments == {"entity": "Mount Everest"}
    assert tasks[1].arguments == {"entity": "K2"}
    assert tasks[2].arguments == {"a": Ref(1), "b": Ref(2)} and tasks[2].refs == (1, 2)
    assert tasks[2].call == "add($1, $2)" and tasks[2].line == 3


def test_braced_refs_and_templates():
    tasks, errors, _ = tasks_and_errors(
        '1. search("a")\n2. search("b")\n'
        '3. search("${1} vs $2!")\n4. search("${2}")\n5. add(${1})\n6. join()'
    )
    assert errors == []
    assert tasks[2].arguments["entity"] == Template((Ref(1), " vs ", Ref(2), "!"))
    assert tasks[3].arguments["entity"] == Ref(2)  # a string that is only a ref: the value
    assert tasks[4].arguments["a"] == Ref(1)


def test_escaped_dollar_is_text():
    tasks, errors, _ = tasks_and_errors('1. search("costs \\$5 or $$")\n')
    # `$$` is not a ref (no digits) and stays text; `\$5` is an escaped dollar.
    assert errors == []
    assert tasks[0].arguments["entity"] == "costs $5 or $$"


def test_thought_lines_attach_to_the_next_task():
    tasks, errors, _ = tasks_and_errors(
        'Thought: first the heights.\n1. height("a")\nThought:   \n2. height("b")\n'
        "thought: lower case works too\n3. add($1, $2)\n4. join()"
    )
    assert errors == []
    assert [t.thought for t in tasks] == ["first the heights.", None, "lower case works too"]


def test_nested_strings_with_commas_parens_quotes():
    line = r'''1. search("K2, \"the savage\" (mountain), 'x'")'''
    tasks, errors, _ = tasks_and_errors(line + "\n2. search('it\\'s (a) \"b\", c')")
    assert errors == []
    assert tasks[0].arguments["entity"] == "K2, \"the savage\" (mountain), 'x'"
    assert tasks[1].arguments["entity"] == "it's (a) \"b\", c"


def test_keyword_arguments_and_defaults():
    tasks, errors, _ = tasks_and_errors('1. add(a=1, b=2.5)\n2. add(3)\n3. add(4, b=-1e3)')
    assert errors == []
    assert tasks[0].arguments == {"a": 1, "b": 2.5}
    assert tasks[1].arguments == {"a": 3}
    assert tasks[2].arguments == {"a": 4, "b": -1000.0}


def test_lists_literals_and_refs_inside_lists():
    tasks, errors, _ = tasks_and_errors(
        '1. search("x")\n2. concat(["a", \'b\', $1, "${1}!"], sep=", ")\n'
        "3. concat([], sep='')\n4. concat(parts=[\"a\",], )"
    )
    assert errors == []
    assert tasks[1].arguments["parts"] == ["a", "b", Ref(1), Template((Ref(1), "!"))]
    assert tasks[1].refs == (1,)
    assert tasks[2].arguments == {"parts": [], "sep": ""}
    assert tasks[3].arguments == {"parts": ["a"]}


def test_literal_words():
    name, args, kwargs = parse_call("f(true, False, None, null, 0, -2, 3.5, [1, [2]], {'k': $3})")
    assert name == "f"
    assert args == [True, False, None, None, 0, -2, 3.5, [1, [2]], {"k": Ref(3)}]
    assert kwargs == {}


@pytest.mark.parametrize(
    "call",
    [
        "f(x)",  # a bare name is not a value
        "f(__import__('os'))",
        "f(1 + 2)",
        "f('a'.upper())",
        "f(lambda: 1)",
        "f('unterminated)",
        "f(1,, 2)",
        "f(a=1, 2)",
        "f(a=1, a=2)",
        "f(1) extra",
        "f(1",
        "(1)",
        "f($)",
        "f({1: 2})",
        "f([[[[[[[[[[1]]]]]]]]]])",  # nested too deep
        "f(1e999)",
    ],
)
def test_calls_that_are_not_literal(call):
    with pytest.raises(SyntaxProblem):
        parse_call(call)


def test_comment_after_call_is_fine():
    assert parse_call("f(1)  # why") == ("f", [1], {})


def test_join_ends_the_plan_and_later_calls_are_reported():
    tasks, errors, joined = tasks_and_errors('1. search("a")\n2. join()\n3. search("b")\nbye')
    assert joined and [t.number for t in tasks] == [1]
    assert kinds(errors) == ["after_join"] and errors[0].task == 3
    assert not errors[0].repairable


def test_join_is_seen_without_a_newline():
    p = PlanParser(TOOLS)
    assert p.feed('1. search("a")\n2. jo') and not p.joined
    p.feed("in()")
    assert p.joined  # no newline needed: the model may stop right there


def test_multi_line_deltas_and_half_lines():
    p = PlanParser(TOOLS)
    out = p.feed('1. search("a")\n2. search("b")\n3. sea')
    assert [t.number for t in out] == [1, 2]
    assert p.feed('rch("c') == []
    out = p.feed('")\n4. join()')
    assert [t.number for t in out] == [3] and p.joined
    assert p.close() == []


def test_close_flushes_the_last_line():
    p = PlanParser(TOOLS)
    assert [t.number for t in p.feed('1. search("a")')] == [1]  # at its `)`
    assert p.feed(" and more") == []
    out = p.close()
    assert [e.kind for e in out] == ["ignored", "incomplete"]
    assert out[0].line == 1 and out[0].task is None and "and more" in out[0].message
    with pytest.raises(RuntimeError):
        p.feed("x")


def test_garbage_lines():
    tasks, errors, _ = tasks_and_errors(
        'Here is the plan:\n```\n1. search("a")\n2. search "b"\nsearch("c")\n```\n3. join()'
    )
    assert [t.number for t in tasks] == [1]
    assert kinds(errors) == ["ignored", "syntax", "syntax"]
    assert errors[0].task is None and not errors[0].repairable
    assert errors[1].task == 2 and errors[1].line == 4 and errors[1].repairable
    assert errors[2].task is None and errors[2].repairable  # a call without a number


def test_duplicate_numbers():
    tasks, errors, _ = tasks_and_errors('1. search("a")\n1. search("b")\n2. search($1)')
    assert [t.arguments["entity"] for t in tasks] == ["a", Ref(1)]
    assert kinds(errors) == ["duplicate"] and errors[0].task == 1


def test_forward_self_and_missing_refs():
    tasks, errors, _ = tasks_and_errors(
        '1. search($2)\n2. search($2)\n3. search("x")\n4. search($9)\n5. add($0)'
    )
    assert [t.number for t in tasks] == [3]
    assert kinds(errors) == ["forward_ref", "forward_ref", "forward_ref", "missing_ref"]
    assert "itself" in errors[1].message


def test_refs_to_a_broken_task_are_errors_too():
    tasks, errors, _ = tasks_and_errors('1. nope("a")\n2. search($1)\n3. search("${1}")')
    assert tasks == []
    assert kinds(errors) == ["unknown_tool", "missing_ref", "missing_ref"]
    assert "had an error" in errors[1].message


def test_unknown_tool_lists_the_tools():
    _, errors, _ = tasks_and_errors('1. google("a")')
    assert errors[0].kind == "unknown_tool" and "search" in errors[0].message


@pytest.mark.parametrize(
    "line",
    [
        "1. search()",  # missing required
        '1. search("a", "b")',  # too many
        '1. search(name="a")',  # unknown keyword
        "1. search(5)",  # a number for a string
        '1. add("many")',  # a word for a number
        '1. concat("a")',  # a string for a list
        "1. add(1, b=[1])",
        "1. join(1)",
    ],
)
def test_bad_arguments(line):
    tasks, errors, _ = tasks_and_errors(line)
    assert tasks == []
    assert len(errors) == 1 and errors[0].kind in ("bad_arguments", "syntax")
    assert errors[0].task == 1


def test_literals_are_checked_even_when_another_argument_is_a_ref():
    _, errors, _ = tasks_and_errors('1. height("a")\n2. add($1, b="x")')
    assert kinds(errors) == ["bad_arguments"] and "'b'" in errors[0].message


def test_errors_are_frozen_structured_records():
    _, errors, _ = tasks_and_errors('1. search("a")\n2. nope()')
    e = errors[0]
    assert isinstance(e, PlanError)
    assert (e.line, e.task, e.kind) == (2, 2, "unknown_tool")
    assert e.text == "2. nope()"
    with pytest.raises(AttributeError):
        e.kind = "x"  # type: ignore[misc]
    assert "line 2 (task 2)" in str(e)


def test_numbering_styles():
    tasks, errors, _ = tasks_and_errors(
        '1) search("a")\nTask 2: search("b")\n$3. search("c")\nStep 4: search("d")'
    )
    assert errors == [] and [t.number for t in tasks] == [1, 2, 3, 4]


def test_known_tasks_from_an_earlier_plan():
    tasks, errors, _ = tasks_and_errors('3. add($1, $2)\n4. add($3)', known=[1, 2])
    assert errors == [] and tasks[0].refs == (1, 2)
    _, errors, _ = tasks_and_errors('2. search("again")', known=[1, 2])
    assert kinds(errors) == ["duplicate"]


def test_max_tasks():
    tasks, errors, _ = tasks_and_errors('1. search("a")\n2. search("b")\n3. search("c")',
                                        max_tasks=2)
    assert len(tasks) == 2 and kinds(errors) == ["too_many"]


def test_overlong_line_is_reported_and_skipped_without_buffering():
    p = PlanParser(TOOLS, max_line=100)
    p.feed('1. search("' + "x" * 50)
    for _ in range(100):
        p.feed("y" * 1000)
    assert p._buf_len <= 100  # nothing more was kept
    out = p.feed('")\n2. search("ok")\n')
    assert [type(o).__name__ for o in out] == ["PlanError", "ParsedTask"]
    assert out[0].kind == "too_long" and out[0].task == 1


def test_reject_turns_a_task_into_a_missing_ref():
    p = PlanParser(TOOLS)
    p.feed('1. search("a")\n')
    p.reject(1)
    out = p.feed("2. search($1)\n")
    assert isinstance(out[0], PlanError) and out[0].kind == "missing_ref"


def test_untyped_parser_accepts_any_tool():
    tasks, errors, _ = tasks_and_errors('1. anything(1, x="y")\n2. other($1)', tools=None)
    assert errors == [] and tasks[0].arguments == {"arg0": 1, "x": "y"}
    assert isinstance(tasks[1], ParsedTask) and tasks[1].refs == (1,)


def every_split(text: str, **options):
    """(items, joined) for the whole text at once, after checking that feeding it
    cut at every single position gives exactly the same."""
    results = []
    for cut in [None, *range(len(text) + 1)]:
        p = PlanParser(TOOLS, **options)
        out = p.feed(text) if cut is None else p.feed(text[:cut]) + p.feed(text[cut:])
        out += p.close()
        results.append((out, p.joined, p.errors, p.tasks))
    assert all(r == results[0] for r in results), text
    return results[0][0], results[0][1]


@pytest.mark.parametrize("text, line", [
    ('1. search("a")\n2. search("b")', 3),
    ('1. search("a")\n2. sea', 3),
    ('1. search("a")\n\n', 3),
    ("", 1),
    ("Thought: hmm", 2),
])
def test_a_plan_without_join_is_incomplete(text, line):
    tasks, errors, joined = parse_plan(text, TOOLS)
    assert not joined and errors[-1].kind == "incomplete"
    assert errors[-1].task is None and errors[-1].line == line and not errors[-1].repairable
    items, _ = every_split(text)
    assert items[-1] == errors[-1]


def test_incomplete_names_the_line_join_was_missing_from():
    _, errors, _ = parse_plan('1. search("a")\n2. search("b")\n', TOOLS)
    assert [(e.line, e.kind) for e in errors] == [(3, "incomplete")]
    assert "line 3: incomplete: the plan ended without join()" in str(errors[0])
    _, errors, joined = parse_plan('1. search("a")\n2. join()', TOOLS)
    assert joined and errors == []


@pytest.mark.parametrize("tail, kinds_after", [
    ("", []),
    ("  # done", []),
    (" that is all.", []),
    ("x", []),
    ("<END_OF_PLAN>", []),
    (" 3. search('b')", ["after_join"]),
    ("3. search('b')", ["after_join"]),
    (" search('b')", ["after_join"]),
    (" join()", []),
    ("\n3. search('b')", ["after_join"]),
])
def test_text_after_join_on_its_line_is_after_the_plan(tail, kinds_after):
    text = '1. search("a")\n2. join()' + tail
    items, joined = every_split(text)
    assert joined
    assert [i.number for i in items if isinstance(i, ParsedTask)] == [1]
    errors = [i for i in items if isinstance(i, PlanError)]
    assert kinds(errors) == kinds_after
    if errors:
        assert errors[0].task in (3, None) and not errors[0].repairable
        assert errors[0].line == 2 + tail.count("\n")


def test_a_join_line_with_a_long_tail_still_ends_the_plan():
    text = '1. search("a")\n2. join() ' + "x" * 300 + '\n3. search("b")\n'
    items, joined = every_split(text, max_line=100)
    assert joined and kinds(i for i in items if isinstance(i, PlanError)) == ["after_join"]
    assert items[-1].line == 3


def test_parse_plan_keeps_too_long_errors():
    text = '1. search("' + "x" * 200 + '")\n2. search("ok")\n3. join()'
    tasks, errors, joined = parse_plan(text, TOOLS, max_line=100)
    assert joined and [t.number for t in tasks] == [2]
    assert [(e.kind, e.task, e.line) for e in errors] == [("too_long", 1, 1)]
    items, _ = every_split(text, max_line=100)
    assert [i for i in items if isinstance(i, PlanError)] == errors
