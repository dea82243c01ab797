"""Diagnostics, compared exactly with golden files.

Each case runs the command line in-process from ``tests/golden`` and compares its stderr with
``tests/golden/CASE.err``: ``FILE:LINE:COL: error: MESSAGE``, the source line and a caret, or
``lsrl: error: MESSAGE`` where no file position is involved; the exit status is 1 and stdout stays
empty. To rewrite the golden files after a deliberate change of wording, run with
``LSRL_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from lsrl.ir.graph import Loc

from lsrl.cli import main
from lsrl.diagnostics import render
from lsrl.errors import LsrlError

GOLDEN = Path(__file__).resolve().parent / "golden"


def _check(name: str) -> list[str]:
    return ["check", f"{name}.lsrl"]


CASES: dict[str, list[str]] = {
    # the program's text
    **{name: _check(name) for name in [
        "syntax_expected_bracket", "syntax_unexpected_token", "syntax_unclosed_paren", "syntax_unclosed_paren_next_line",
        "syntax_unclosed_bracket_next_line", "syntax_bad_character",
        "unknown_name", "rebinding", "dimension_mismatch", "index_out_of_range", "wrong_argument_count",
        "unknown_keyword", "non_affine_state", "self_dependent_state", "state_through_product", "cycle",
        "state_cycle", "used_before_bound", "self_reference", "gate_compile_time", "divide_by_runtime", "runtime_condition",
        "missing_input", "repeated_input", "missing_output", "import_cycle", "import_missing", "recursion", "tabs",
    ]},
    # parameters, options and input data: no position in a program
    "unknown_parameter": ["check", "params.lsrl", "-D", "seq_lne=4"],
    "bad_parameter_value": ["check", "params.lsrl", "-D", "seq_len=three"],
    "malformed_define": ["check", "params.lsrl", "-D", "seq_len"],
    "missing_program": ["check", "nowhere.lsrl"],
    "unreadable_input": ["run", "params.lsrl", "--input", "@missing.json"],
    "invalid_json_input": ["run", "params.lsrl", "--input", "@bad.json"],
    "bad_input_token": ["run", "params.lsrl", "--input", "1 2/0 3"],
    "wrong_token_length": ["run", "params.lsrl", "--input", "1 2,3"],
    "empty_input": ["run", "params.lsrl", "--input", " "],
    "exact_on_a_target": ["run", "params.lsrl", "--input", "1", "--backend", "gru", "--exact"],
    "missing_required_option": ["run", "params.lsrl"],
}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_diagnostic(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    status, out, err = run_cli(CASES[name])
    expected = GOLDEN / f"{name}.err"
    if os.environ.get("LSRL_UPDATE_GOLDEN"):
        expected.write_text(err, encoding="utf-8")
    assert (status, out) == (1, "")
    assert err == expected.read_text(encoding="utf-8")
    assert "Traceback" not in err and "error: " in err.splitlines()[0]


def test_every_golden_file_has_a_case() -> None:
    assert {p.stem for p in GOLDEN.glob("*.err")} == set(CASES)


def test_rendering_shapes() -> None:
    source = {"p.lsrl": "a\n\tb = c\n"}
    assert render(LsrlError("no", Loc("p.lsrl", 2, 6)), source) == "p.lsrl:2:6: error: no\n\tb = c\n\t    ^\n"
    assert render(LsrlError("no")) == "lsrl: error: no\n"
    # a file that cannot be read still gets its position line
    assert render(LsrlError("no", Loc("gone.lsrl", 3, 1))) == "gone.lsrl:3:1: error: no\n"
