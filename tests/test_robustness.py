"""Robustness: mutated example programs give a result or a diagnostic, never an internal error.

Each example is mutated by deleting, duplicating and swapping tokens or characters, then checked
with ``lsrl check`` in-process. Every outcome must be success (status 0) or a user diagnostic
(status 1, first line ``FILE:LINE:COL: error: ...`` or ``lsrl: error: ...``); an exception escaping
``main`` fails the test. ``LSRL_FUZZ_EXAMPLES=N`` runs N mutations instead of the quick default.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsrl.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROGRAMS = {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.lsrl"))}
PROGRAMS.update({f"lib/{p.name}": p.read_text(encoding="utf-8") for p in sorted((EXAMPLES / "lib").glob("*.lsrl"))})

# roughly the language's tokens, with whitespace and comments as tokens of their own
TOKEN = re.compile(
    r'\s+|#[^\n]*|"(?:[^"\\\n]|\\.)*"|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[A-Za-z_]\w*|\.\.|<-|==|!=|<=|>=|&&|\|\||.',
    re.DOTALL,
)
DIAGNOSTIC = re.compile(r"^(.+:\d+:\d+|lsrl): error: \S")


@st.composite
def mutated_programs(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(PROGRAMS)))
    text = PROGRAMS[name]
    units = TOKEN.findall(text) if draw(st.booleans()) else list(text)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(units) - 1))
        operation = draw(st.sampled_from(["delete", "duplicate", "swap"]))
        if operation == "delete":
            del units[i]
        elif operation == "duplicate":
            units.insert(i, units[i])
        else:
            j = draw(st.integers(0, len(units) - 1))
            units[i], units[j] = units[j], units[i]
        if not units:
            break
    return name, "".join(units)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/, so that mutated programs find the files they import."""
    root = tmp_path_factory.mktemp("mutants")
    shutil.copytree(EXAMPLES, root / "examples")
    return root / "examples"


@settings(
    max_examples=int(os.environ.get("LSRL_FUZZ_EXAMPLES", "120")),
    deadline=None,
    derandomize="LSRL_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=mutated_programs())
def test_mutated_examples_succeed_or_get_a_diagnostic(workdir: Path, program: tuple[str, str]) -> None:
    name, text = program
    path = workdir / name
    original = path.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["check", str(path)])
    finally:
        path.write_text(original, encoding="utf-8")  # a mutated library must not break later examples
    if status == 0:
        assert err.getvalue() == "" and ": ok," in out.getvalue()
    else:
        assert status == 1 and out.getvalue() == ""
        assert DIAGNOSTIC.match(err.getvalue()), err.getvalue()
