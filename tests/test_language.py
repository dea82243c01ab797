"""The .lsrl language: every example against its Python-builder twin, and each construct of the
language (docs/language.md) on small programs."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import pytest
from lsrl.ir.graph import Graph, Loc
from lsrl.ir.interpret import NotExactError, run

from lsrl.corpus import CASES, Case, as_fraction
from lsrl.corpus.cases_layers import FLOAT_CASES
from lsrl.errors import LsrlError, UsageError
from lsrl.load import compile_file, compile_source

SOURCE_CASES = [c for c in CASES if c.source]


def _key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


@lru_cache(maxsize=None)
def _compiled(source: str, params: tuple) -> Graph:
    return compile_file(Path(__file__).resolve().parent.parent / "examples" / source, dict(params))


def _fractions(rows) -> list[list[Fraction]]:
    return [[Fraction(int(v.numerator), int(v.denominator)) for v in row] for row in rows]


def outputs(text: str, inputs, params=None) -> list[list[Fraction]]:
    """Compile ``text`` and run it exactly on one sequence."""
    return _fractions(run(compile_source(text, "test.lsrl", params), inputs, exact=True)[0])


def error_of(text: str, params=None) -> LsrlError:
    with pytest.raises(LsrlError) as e:
        compile_source(text, "test.lsrl", params)
    return e.value


# --- the examples and their Python twins ------------------------------------------------------------
def test_every_example_is_in_the_table() -> None:
    folder = Path(__file__).resolve().parent.parent / "examples"
    examples = {str(p.relative_to(folder)) for p in folder.rglob("*.lsrl") if p.parent.name != "lib"}
    # (the float rows of examples/layers have no Python twin: the .lsrl file is the layer)
    assert examples == {c.source for c in SOURCE_CASES} | {c.source for c in FLOAT_CASES}


@pytest.mark.parametrize("case", SOURCE_CASES, ids=lambda c: c.name)
def test_example_matches_its_python_twin(case: Case) -> None:
    """Same node count, and in exact mode the same outputs as the builder, which are the expected ones."""
    built, written = case.graph(), _compiled(case.source, _key(case.params))
    assert len(written) == len(built)
    assert written.stats() == built.stats()
    for r in case.runs:
        inputs = [[as_fraction(v) for v in token] for token in r.inputs]
        mine, theirs = _fractions(run(written, inputs, exact=True)[0]), _fractions(run(built, inputs, exact=True)[0])
        assert mine == theirs
        for t, want in enumerate(r.expected):
            if want is not None:
                assert mine[t] == [as_fraction(w) for w in want], f"step {t}"


def test_nodes_carry_source_locations_and_names() -> None:
    graph = _compiled("more_ones.lsrl", ())
    by_name = {n.name: n for n in graph}
    assert by_name["x"].loc == Loc(str(Path(__file__).resolve().parent.parent / "examples" / "more_ones.lsrl"), 3, 1)
    assert by_name["ones"].kind == "state" and by_name["ones"].loc.line == 5
    assert by_name["zeros"].labels[0].name == "zeros"
    assert all(n.loc is not None for n in graph)
    assert any(n.kind == "step" and n.name == "larger/step" for n in graph)


# --- numbers ------------------------------------------------------------------------------------------
def test_numbers_are_exact() -> None:
    assert outputs("input x[1]\noutput x * (1/3) + 0.25 - 1e-2 + 2e3", [[1]]) == [[Fraction(1, 3) + Fraction(1, 4) - Fraction(1, 100) + 2000]]


def test_pi_sqrt_cos_sin_stay_exact_where_rational() -> None:
    text = "input x[1]\noutput [cos(0), cos(2*pi/3), sin(pi/6), sqrt(9/4), cos(pi) + sin(3*pi/2), sqrt(0)] * x"
    assert outputs(text, [[1]]) == [[1, Fraction(-1, 2), Fraction(1, 2), Fraction(3, 2), -2, 0]]


def test_irrational_constants_become_floats() -> None:
    graph = compile_source("input x[1]\noutput sqrt(2) * x + cos(1)", "t.lsrl")
    with pytest.raises(NotExactError):
        run(graph, [[1]], exact=True)
    assert run(graph, [[1.0]])[0, 0, 0] == pytest.approx(math.sqrt(2) + math.cos(1))


@pytest.mark.parametrize("numerator", range(-13, 14))
@pytest.mark.parametrize("denominator", [1, 2, 3, 4, 5, 6, 12])
def test_trigonometry_of_pi_multiples_agrees_with_sympy(numerator: int, denominator: int) -> None:
    sympy = pytest.importorskip("sympy")
    from gmpy2 import mpq

    from lsrl.compiletime import PiMultiple, apply_math

    angle = PiMultiple(mpq(numerator, denominator)) if numerator else mpq(0)
    for name, function in (("cos", sympy.cos), ("sin", sympy.sin)):
        reference = function(sympy.pi * sympy.Rational(numerator, denominator))
        mine = apply_math(name, angle)
        if reference.is_Rational:
            assert type(mine) is type(mpq(0)) and Fraction(int(mine.numerator), int(mine.denominator)) == Fraction(int(reference.p), int(reference.q))
        else:
            assert type(mine) is float and mine == pytest.approx(float(reference))


# --- expressions --------------------------------------------------------------------------------------
def test_operator_precedence_follows_python() -> None:
    text = """input x[1]
a = 2 + 3 * 4 - 6 / 2 % 2
b = -2 * 3 + 1
c = 1 if 1 < 2 && !(2 < 1) || 1 > 2 else 0
output [a, b, c] * x
"""
    assert outputs(text, [[1]]) == [[2 + 12 - 1, -5, 1]]


def test_vectors_matrices_and_comprehensions() -> None:
    text = """input x[3]
M = [[1, 0, 0],
     [0, 2, 0]]   # a matrix literal may span lines
squares = [i * i for i in 0..5 if i % 2 == 1]
output M @ x
output squares + x[0]
output eye(2) @ x[1:] + diag([1, 2]) @ x[:2] - ones(2, 3) @ x + zeros(2)
output [len(x), len(squares), sum(squares), sum(x)]
output [[1, 2], [3, 4]] @ [1, 1] + [[1, 2], [3, 4]][1]
"""
    got = outputs(text, [[1, 2, 3]])[0]
    assert got == [1, 4, 1 + 1, 9 + 1, (2 + 1 - 6), (3 + 4 - 6), 3, 2, 10, 6, 3 + 3, 7 + 4]


def test_indexing_and_slicing() -> None:
    text = "input x[4]\noutput concat(x[-1], x[1:3], x[:1], x[2:])\noutput [10, 20, 30][-2] + x[0]"
    assert outputs(text, [[1, 2, 3, 4]]) == [[4, 2, 3, 1, 3, 4, 21]]


def test_runtime_arithmetic_gates_and_broadcasting() -> None:
    text = "input x[2]\nh = x[0]\noutput x * h\noutput x + h\noutput 1 - x / 2\noutput -x\noutput [1, 2] * x"
    assert outputs(text, [[3, 5]]) == [[9, 15, 6, 8, Fraction(-1, 2), Fraction(-3, 2), -3, -5, 3, 10]]


def test_a_list_of_runtime_values_is_their_concatenation() -> None:
    text = "input x[2]\nparts = [x[1], 7, x[0]]\noutput parts\noutput relu(parts - 4)"
    assert outputs(text, [[1, 5]]) == [[5, 7, 1, 1, 3, 0]]


def test_compile_time_comparisons_strings_and_truth_values() -> None:
    text = """param mode = "fast"
input x[1]
k = 3 if mode == "fast" && mode != "slow" else 4
output x * k
"""
    assert outputs(text, [[2]]) == [[6]]
    assert outputs(text, [[2]], {"mode": "slow"}) == [[8]]


# --- statements ---------------------------------------------------------------------------------------
def test_functions_defaults_keywords_blocks_and_recursion() -> None:
    text = """input x[1]
def scaled(v, by = 2) = v * by
def fact(n) {
    if n <= 1 {
        return 1
    }
    return n * fact(n - 1)
}
def both(v) {
    doubled = scaled(v)
    return [doubled, scaled(v, by = 3)]
}
output both(x)
output scaled(x, fact(4))
output step(x, scale = 10)
"""
    assert outputs(text, [[1]]) == [[2, 3, 24, 1]]


def test_closures_see_their_definition_scope() -> None:
    text = """input x[1]
k = 5
def add_k(v) = v + k
for i in 1..3 {
    def add_i(v) = v + i
    output add_i(add_k(x))
}
"""
    assert outputs(text, [[1]]) == [[7, 8]]


def test_loops_unroll_and_label_their_names() -> None:
    text = """input x[1]
for i in 0..3 {
    reg = x * i
    for j in 0..2 {
        inner = reg + j
        output inner
    }
}
def helper(v) {
    local = v + 1
    return local
}
output helper(x)
"""
    graph = compile_source(text, "t.lsrl")
    names = {n.name for n in graph}
    assert {"reg[0]", "reg[2]", "inner[1,0]", "inner[2,1]", "helper/local"} <= names
    assert outputs(text, [[1]]) == [[0, 1, 1, 2, 2, 3, 2]]


def test_if_else_chains_and_else_on_its_own_line() -> None:
    text = """param n = 2
input x[1]
if n == 1 { y = x } else if n == 2 {
    y = x * 2
}
else {
    y = x * 3
}
output y
"""
    assert outputs(text, [[1]]) == [[2]]
    assert outputs(text, [[1]], {"n": 1}) == [[1]]
    assert outputs(text, [[1]], {"n": 7}) == [[3]]


def test_states() -> None:
    text = """input x[1]
state total = 0 <- total + x
state pair = [1, 0] <- [[0, 1], [1, 0]] @ pair
state three[3] = 1/2 <- three + x
state lagged[1] = 0 <- x     # the previous value unused: a one-step copy
output concat(total, pair, three, lagged)
"""
    assert outputs(text, [[1], [2]]) == [
        [1, 0, 1, Fraction(3, 2), Fraction(3, 2), Fraction(3, 2), 1],
        [3, 1, 0, Fraction(7, 2), Fraction(7, 2), Fraction(7, 2), 2],
    ]


def test_counters_and_the_standard_library_names() -> None:
    text = """input x[1]
output counter()
output mod_counter(3)
output not(x)
output and(x, x)
output or(x, 0)
output delay(x, 1)
"""
    assert outputs(text, [[1], [0], [1]]) == [[0, 0, 0, 1, 1, 0], [1, 1, 1, 0, 0, 1], [2, 2, 0, 1, 1, 0]]


def test_expression_statements_call_for_effect() -> None:
    text = """input x[1]
def emit(v) {
    output v + 1
}
emit(x)
emit(x * 2)
"""
    assert outputs(text, [[3]]) == [[4, 7]]


def test_imports_are_relative_and_run_once(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.lsrl").write_text("def twice(v) = v * 2\nk = 10\n")
    (tmp_path / "lib" / "more.lsrl").write_text('import "base.lsrl"\ndef four(v) = twice(twice(v))\n')
    main = tmp_path / "main.lsrl"
    main.write_text('import "lib/base.lsrl"\nimport "lib/more.lsrl"\ninput x[1]\noutput four(x) + k\n')
    assert _fractions(run(compile_file(main), [[1]], exact=True)[0]) == [[14]]


def test_import_cycles_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.lsrl").write_text('import "b.lsrl"\n')
    (tmp_path / "b.lsrl").write_text('import "a.lsrl"\n')
    main = tmp_path / "main.lsrl"
    main.write_text('import "a.lsrl"\ninput x[1]\noutput x\n')
    with pytest.raises(LsrlError, match="import cycle") as e:
        compile_file(main)
    assert e.value.loc is not None and e.value.loc.file.endswith("b.lsrl")


def test_params_take_overrides_of_their_type() -> None:
    text = 'param n = 2\nparam w = [1, 1]\nparam kind = "a"\ninput x[1]\noutput x * n + w @ [1, 2]\noutput x * (1 if kind == "b" else 0)'
    assert outputs(text, [[1]]) == [[5, 0]]
    assert outputs(text, [[1]], {"n": "1/2", "w": "0,1", "kind": '"b"'}) == [[Fraction(5, 2), 1]]
    assert outputs(text, [[1]], {"n": Fraction(1, 3), "w": [2, 0], "kind": "b"}) == [[Fraction(7, 3), 1]]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"nn": 1}, "unknown parameter 'nn'.*did you mean 'n'"),
        ({"n": "two"}, "bad value for parameter 'n': 'two' is not a number"),
        ({"w": "1,x"}, "bad value for parameter 'w'"),
        ({"n": True}, "bad value for parameter 'n'"),
    ],
)
def test_bad_overrides_are_usage_errors(params: dict, message: str) -> None:
    err = error_of("param n = 2\nparam w = [1, 1]\ninput x[1]\noutput x * n", params)
    assert isinstance(err, UsageError) and err.loc is None
    assert re.search(message, err.message), err.message


# --- what the language refuses --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        ("input x[1]\nx = 2\noutput x", "'x' is already bound"),
        ("input x[1]\nfor i in 0..2 { x = i }\noutput x", "'x' is already bound"),
        ("input x[1]\noutput [x for x in 0..2]", "'x' is already bound"),
        ("input x[2]\noutput x + [1, 2, 3]", "length mismatch"),
        ("input x[2]\noutput x[5]", "index 5 is out of range"),
        ("input x[2]\noutput x[1:1]", r"slice \[1:1\] is out of range"),
        ("input x[2]\noutput x[x]", "an index must be a compile-time integer"),
        ("input x[1]\noutput step(x, 1, 2)", "wrong number of arguments: step takes 1 to 2"),
        ("input x[1]\noutput step(x, scal = 2)", "step has no parameter 'scal'; did you mean 'scale'"),
        ("input x[1]\noutput 1 / x", "division by a runtime value"),
        ("input x[1]\noutput x / 0", "division by zero"),
        ("input x[1]\noutput ifelse(1, x, 0)", "condition of ifelse is known at compile time"),
        ("input x[1]\noutput x if x > 0 else 0", "compares compile-time values"),
        ("input x[1]\nif 1 { y = 2 }\noutput x", "must be a compile-time truth value"),
        ("input x[1]\nstate s = 0 <- relu(s)\noutput s", "not affine.*ReLU"),
        ("input x[1]\nstate s = 0 <- s * s\noutput s", "multiplies its previous value by itself"),
        ("input x[1]\nstate s = 0 <- accumulate(s)\noutput s", "not affine.*another state"),
        ("input x[1]\nstate s = x <- s\noutput s", "initial value of a state must be a compile-time"),
        ("input x[1]\ndef f(v) {\n output v\n return v\n}\nstate s = 0 <- f(s)\noutput s", "output cannot be declared inside a state update"),
        ("input x[1]\na = b\nb = a\noutput a", "cycle"),
        ("input x[1]\na = b\nb = x\noutput a", "'b' is used before it is bound"),
        ("input x[1]\ny = y + 1\noutput y", "'y' is used in its own definition"),
        ("input x[1]\noutput xx", "unknown name 'xx'; did you mean 'x'"),
        ("input x[1]\ninput y[1]\noutput x", "a second input"),
        ("output 1", "the program has no input"),
        ("input x[1]", "the program has no output"),
        ("input x[1]\ndef f(n) = f(n + 1)\noutput f(1)", "calls nest more than"),
        ("input x[1]\nfor i in 0..1000000 { }\noutput x", "more than 100000 steps"),
        ("input x[1]\nreturn x", "return outside a function"),
        ("input x[1]\nif 1 < 2 { param p = 1 }\noutput x", "a param is declared at the top level"),
        ("input x[1]\nx + 1\noutput x", "value is unused"),
        ("input x[1]\ndef f(v) { y = v }\noutput f(x)", "'f' returns no value"),
        ("input x[1]\noutput x(1)", "'x' is a runtime vector of length 1, not a function"),
        ("input x[1]\noutput error(\"no \\\"luck\\\"\")", 'no "luck"'),
        ("input x[1]\noutput [1, 2] @ [[1]]", "'@' needs"),
        ("input x[1]\noutput x @ [[1]]", "applies a compile-time matrix from the left"),
        ("input x[1]\noutput sqrt(-1) * x", "sqrt of a negative number"),
        ("input x[0]\noutput x", "the input length must be at least 1"),
        ("input x[1]\noutput eye(1000000)", "too large"),
        ("input x[1]\noutput x * 1e100000", "too large"),
        ("input x[1]\noutput concat(x, \"s\")", "concat joins vectors and numbers"),
        ('input x[1]\nimport "nowhere.lsrl"\noutput x', 'cannot read "nowhere.lsrl"'),
    ],
)
def test_mistakes_are_diagnosed(text: str, message: str) -> None:
    err = error_of(text)
    assert re.search(message, err.message), err.message
    assert err.loc is not None and err.loc.file == "test.lsrl"
