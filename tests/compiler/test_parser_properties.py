"""Property tests of the streaming parser (hypothesis)."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait import Ref, Template
from plait.compiler import ParsedTask, PlanError, PlanParser

from .conftest import TOOLS

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Text that is hard to tokenize: quotes, commas, parens, dollars, backslashes, unicode.
TRICKY = st.text(alphabet=st.sampled_from(list("ab ,()[]{}'\"$\\#=:.1é中\t")), max_size=12)


def render_string(parts) -> str:
    out = []
    for p in parts:
        if isinstance(p, Ref):
            out.append(f"${{{p.node}}}")
        else:
            out.append(p.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
                       .replace("\n", "\\n"))
    return '"' + "".join(out) + '"'


@st.composite
def text_value(draw, n):
    """A value for a `str` parameter, as (plan source, expected parsed value)."""
    earlier = list(range(1, n))
    if earlier and draw(st.booleans()):
        r = draw(st.sampled_from(earlier))
        return f"${r}", Ref(r)
    pieces = draw(st.lists(
        st.one_of(TRICKY, st.sampled_from(earlier).map(Ref)) if earlier else TRICKY,
        min_size=1, max_size=4,
    ))
    merged: list = []
    for p in pieces:  # adjacent text pieces are one piece once parsed
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        elif p != "":
            merged.append(p)
    if not merged:
        merged = [""]
    if len(merged) == 1 and isinstance(merged[0], Ref):
        expected = merged[0]
    elif all(isinstance(p, str) for p in merged):
        expected = "".join(merged)
    else:
        expected = Template(tuple(merged))
    return render_string(merged), expected


@st.composite
def plans(draw):
    """A valid plan as text, the tasks it must parse to, and how it ends."""
    count = draw(st.integers(1, 7))
    lines, expected = [], []
    for n in range(1, count + 1):
        if draw(st.booleans()):
            lines.append("Thought: " + draw(st.text(alphabet="abc ,.$()", max_size=20)))
        kind = draw(st.sampled_from(["search", "add", "concat"]))
        if kind == "search":
            src, val = draw(text_value(n))
            kw = draw(st.booleans())
            lines.append(f"{n}. search({'entity=' if kw else ''}{src})")
            expected.append((n, "search", {"entity": val}))
        elif kind == "add":
            a = draw(st.one_of(st.integers(-10**6, 10**6),
                               st.sampled_from(list(range(1, n)) or [0]).map(Ref)))
            if a == Ref(0):
                a = 7
            a_src = f"${a.node}" if isinstance(a, Ref) else str(a)
            lines.append(f"{n}. add({a_src}, b=2.5)")
            expected.append((n, "add", {"a": a, "b": 2.5}))
        else:
            items = [draw(text_value(n)) for _ in range(draw(st.integers(0, 3)))]
            src = "[" + ", ".join(s for s, _ in items) + "]"
            lines.append(f"{n}. concat({src})")
            expected.append((n, "concat", {"parts": [v for _, v in items]}))
    lines.append(f"{count + 1}. join()")
    sep = draw(st.sampled_from(["\n", "\n\n", "\r\n"]))
    return sep.join(lines) + draw(st.sampled_from(["", "\n"])), expected


def run_parser(text: str, cuts: list[int], **options):
    p = PlanParser(TOOLS, **options)
    out = []
    prev = 0
    for c in sorted(set(cuts)) + [len(text)]:
        out += p.feed(text[prev:c])
        prev = c
    out += p.close()
    return out, p.joined


@SETTINGS
@given(plans(), st.data())
def test_any_split_gives_the_same_tasks(plan, data):
    text, expected = plan
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=30))
    out, joined = run_parser(text, cuts)
    assert joined
    assert all(isinstance(o, ParsedTask) for o in out), [o for o in out if isinstance(o, PlanError)]
    assert [(t.number, t.tool, dict(t.arguments)) for t in out] == expected
    whole, _ = run_parser(text, [])
    assert whole == out


@SETTINGS
@given(plans())
def test_one_character_at_a_time(plan):
    text, expected = plan
    out, joined = run_parser(text, list(range(len(text))))
    assert joined and [(t.number, t.tool, dict(t.arguments)) for t in out] == expected


PLANNISH = st.lists(
    st.sampled_from(list("0123456789. ()[]{},'\"$\\=:#\n\t-+eETruFalsNonjiThought:searchadd")
                    + ["join()", "\n1. ", "search(", "${", "add(", "\nThought: "]),
    max_size=200,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(PLANNISH, st.text(max_size=400)), st.data())
def test_arbitrary_text_never_crashes_or_hangs(text, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=20))
    started = time.perf_counter()
    out, _ = run_parser(text, cuts)
    assert time.perf_counter() - started < 1.0
    assert all(isinstance(o, (ParsedTask, PlanError)) for o in out)
    numbers = [o.number for o in out if isinstance(o, ParsedTask)]
    assert len(numbers) == len(set(numbers))  # never two tasks with one number
    for o in out:
        if isinstance(o, ParsedTask):
            assert all(r < o.number for r in o.refs)  # refs only point back


def test_a_huge_input_is_linear():
    line = '1. search("' + "a, (b) 'c' " * 20 + '")\n'
    text = "".join(line.replace("1.", f"{i}.") for i in range(1, 3001))
    started = time.perf_counter()
    p = PlanParser(TOOLS)
    for i in range(0, len(text), 7):
        p.feed(text[i : i + 7])
    p.close()
    assert len(p.tasks) == 3000
    assert time.perf_counter() - started < 5.0


# What may follow join() on its own line: nothing, comments, prose, calls, more
# joins, the stop mark, and tails long enough to make the line overlong.
JOIN_TAILS = st.sampled_from([
    "", " ", "  # done", " that is all.", "x", "()", " 9. search('b')", "search('b')",
    " join()", "<END_OF_PLAN>", " " * 45 + "x", "y" * 2100, " 9. search('" + "z" * 2100,
])
AFTER = st.sampled_from(["", "\n", "\n9. search('b')\n", "\nbye", "\n" + "w" * 2100])


@SETTINGS
@given(plans(), JOIN_TAILS, AFTER, st.data())
def test_text_after_join_gives_the_same_result_wherever_the_stream_is_cut(plan, tail, after,
                                                                           data):
    text, expected = plan
    text = text.rstrip("\r\n") + tail + after
    end = text.index("join()") + len("join()")  # the plan's own join(): nothing else spells it
    near = st.integers(max(end - 9, 0), min(end + 3, len(text)))
    cuts = data.draw(st.lists(st.one_of(near, st.integers(0, len(text))), max_size=12))
    out, joined = run_parser(text, cuts)
    whole, whole_joined = run_parser(text, [])
    assert joined and whole_joined and out == whole
    assert [(t.number, t.tool, dict(t.arguments)) for t in out
            if isinstance(t, ParsedTask)] == expected
    errors = [o for o in out if isinstance(o, PlanError)]
    assert all(e.kind == "after_join" and not e.repairable for e in errors), errors


JOINISH = st.lists(
    st.sampled_from(list("0123456789. ()',$#\nx") + ["join()", " join() ", "\n1. ", "\n2. ",
                    "search(", "'a')", "\nThought: ", "<END_OF_PLAN>", "y" * 20]),
    max_size=60,
).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JOINISH, PLANNISH), st.integers(20, 60), st.data())
def test_any_text_gives_the_same_result_wherever_the_stream_is_cut(text, max_line, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=20))
    p = PlanParser(TOOLS, max_line=max_line)
    whole = p.feed(text) + p.close()
    out, joined = run_parser(text, cuts, max_line=max_line)
    assert out == whole and joined == p.joined
    assert joined or (whole and whole[-1].kind == "incomplete")  # an unended plan says so
