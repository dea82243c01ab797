"""Table rows for programs in the tradition of tracr's and RASP's test cases.

Each program is written twice, with the Python builder here and in the language under
``examples/`` (the same library calls in the same order, so both build graphs of the same size).
Expected outputs are plain Python on the task's definition, never the program's construction: a
window is a slice of the past, a pattern is a string comparison, a fraction is a count divided by a
count. Letters are tokens a=1 .. z=26.
"""

from __future__ import annotations

import functools
import operator
from fractions import Fraction
from typing import Sequence

import lsrl
from lsrl.corpus.cases_lsrl import NOT_A_CONDITION, refused_without_gates
from lsrl.corpus.rows import Case, Run, tokens
from lsrl.ir.graph import Graph

HALF = Fraction(1, 2)


def letters(word: str) -> list[int]:
    return [ord(c) - ord("a") + 1 for c in word.lower()]


def _total(values: Sequence[lsrl.Value]) -> lsrl.Value:
    """a + b + c: the language's ``sum`` of runtime values (Python's ``sum`` would add a 0 first)."""
    return functools.reduce(operator.add, values)


# --- shift register ---------------------------------------------------------------------------------
def shift_register(length: int) -> Graph:
    """The last ``length`` tokens, newest first, 0 before the start (RASP's shift_by)."""
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.concat([lsrl.delay(x, k) for k in range(length)]), name="window")
    return p.finish()


def _shift_register_run(values: Sequence[object], length: int) -> Run:
    seq = [Fraction(v) for v in values]
    return Run(
        tokens(seq),
        [[seq[t - k] if t - k >= 0 else 0 for k in range(length)] for t in range(len(seq))],
    )


# --- pattern detection --------------------------------------------------------------------------------
def pattern(pattern: Sequence[int]) -> Graph:
    """1 where the last len(pattern) tokens spell the pattern (which holds no 0), else 0."""
    p = lsrl.Program()
    x = p.input(1, tokens=range(1, 27))  # letters
    n = len(pattern)
    matches = [lsrl.eq(lsrl.delay(x, n - 1 - i), pattern[i]) for i in range(n)]
    p.output(lsrl.larger(_total(matches), n - HALF), name="found")
    return p.finish()


def _pattern_run(text: str, word: str) -> Run:
    n = len(word)
    return Run(tokens(letters(text)), [[1 if t + 1 >= n and text[t + 1 - n : t + 1] == word else 0] for t in range(len(text))])


# --- fraction of previous tokens ------------------------------------------------------------------------
def frac_prevs(target: int, max_len: int) -> Graph:
    """The fraction of the tokens so far (the current one included) equal to ``target`` (RASP's
    frac_prevs), exact for the first ``max_len`` steps: count * (1/t), with 1/t read linearly from
    a thermometer code of the step."""
    p = lsrl.Program()
    x = p.input(1)
    count = lsrl.accumulate(lsrl.eq(x, target))
    shift = [[1 if j == i - 1 else 0 for j in range(max_len)] for i in range(max_len)]
    first = [1 if i == 0 else 0 for i in range(max_len)]
    seen = p.state(0, lambda prev: shift @ prev + first, dim=max_len, name="seen")
    inverse_step = [[1 if k == 0 else Fraction(1, k + 1) - Fraction(1, k) for k in range(max_len)]] @ seen
    p.output(count * inverse_step, name="fraction")
    return p.finish()


def _frac_prevs_run(text: str, target: str) -> Run:
    return Run(tokens(letters(text)), [[Fraction(text[: t + 1].count(target), t + 1)] for t in range(len(text))])


# --- parity -------------------------------------------------------------------------------------------------
def parity(max_len: int) -> Graph:
    """1 when the number of ones so far is odd, for up to ``max_len`` ones: a triangle wave of the
    count, one ReLU per corner."""
    p = lsrl.Program()
    x = p.input(1, tokens=2)
    ones = lsrl.accumulate(x)

    def slope_change(k: int) -> int:
        return 1 if k == 0 else (-2 if k % 2 == 1 else 2)

    p.output(_total([slope_change(k) * lsrl.relu(ones - k) for k in range(max_len)]), name="parity")
    return p.finish()


def _parity_run(bits: Sequence[int]) -> Run:
    return Run(tokens(bits), [[sum(bits[: t + 1]) % 2] for t in range(len(bits))])


# --- Dyck-1 ----------------------------------------------------------------------------------------------
def dyck1() -> Graph:
    """Depth and balance of a bracket prefix: tokens 1 for "(" and -1 for ")"."""
    p = lsrl.Program()
    x = p.input(1, tokens=range(-1, 2))
    depth = lsrl.accumulate(x)
    dips = lsrl.accumulate(lsrl.smaller(depth, 0))
    p.output(depth, name="depth")
    p.output(lsrl.and_(lsrl.eq(depth, 0), lsrl.eq(dips, 0)), name="balanced")
    return p.finish()


def _dyck1_run(brackets: str) -> Run:
    steps = [1 if c == "(" else -1 for c in brackets]
    expected = []
    for t in range(len(brackets)):
        prefix = brackets[: t + 1]
        depths = [prefix[: i + 1].count("(") - prefix[: i + 1].count(")") for i in range(len(prefix))]
        expected.append([depths[-1], 1 if depths[-1] == 0 and min(depths) >= 0 else 0])
    return Run(tokens(steps), expected)


# --- gated sum ----------------------------------------------------------------------------------------------
def gated_sum(divisor: int) -> Graph:
    """The running sum of x / divisor over the positive tokens so far: a multiplicative gate whose
    condition is 0 or 1 (for integer tokens) and whose value takes either sign, so targets without
    gates rebuild it from two ReLUs."""
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.accumulate(lsrl.larger(x, 0) * (x * Fraction(1, divisor))), name="sum")
    return p.finish()


def _gated_sum_run(values: Sequence[int], divisor: int) -> Run:
    return Run(
        tokens(values),
        [[sum(Fraction(v, divisor) for v in values[: t + 1] if v > 0)] for t in range(len(values))],
    )


# --- majority ----------------------------------------------------------------------------------------------
def majority(vocab: int) -> Graph:
    """The most frequent token so far (tokens 1..vocab), the smallest one on a tie."""
    p = lsrl.Program()
    x = p.input(1, tokens=range(1, vocab + 1))
    counts = [lsrl.accumulate(lsrl.eq(x, k + 1)) for k in range(vocab)]
    wins = [[lsrl.larger(counts[k], counts[j]) for j in range(k)] for k in range(vocab)]

    def ahead(k: int, j: int) -> lsrl.Value:
        return wins[k][j] if j < k else lsrl.not_(wins[j][k])

    is_majority = [lsrl.larger(_total([ahead(k, j) for j in range(vocab) if j != k]), vocab - Fraction(3, 2)) for k in range(vocab)]
    p.output(_total([(k + 1) * is_majority[k] for k in range(vocab)]), name="majority")
    return p.finish()


def _majority_run(values: Sequence[int], vocab: int) -> Run:
    expected = []
    for t in range(len(values)):
        counts = {v: values[: t + 1].count(v) for v in range(1, vocab + 1)}
        best = max(counts.values())
        expected.append([min(v for v, c in counts.items() if c == best)])
    return Run(tokens(values), expected)


CASES: list[Case] = [
    Case(
        "shift_register",
        shift_register,
        [_shift_register_run([3, "1/2", -2, 7, 0, 5], 3), _shift_register_run([1], 3)],
        params={"length": 3},
        float32_default="bounded",  # any rational numbers: float32 rounds them
        source="shift_register.lsrl",
    ),
    Case(
        "shift_register_5",
        shift_register,
        [_shift_register_run(["1/3", 4, -1, 2, 9, 8, "5/7", 6], 5)],
        params={"length": 5},
        float32_default="bounded",
        source="shift_register.lsrl",
    ),
    Case(
        "pattern_abc",
        pattern,
        [_pattern_run("abcabc", "abc"), _pattern_run("aabcbcabcc", "abc"), _pattern_run("ab", "abc")],
        params={"pattern": (1, 2, 3)},
        source="pattern.lsrl",
        input_range=(1, 26),  # letters
        integer_inputs=True,
    ),
    Case(
        "pattern_aba",
        pattern,
        [_pattern_run("abababa", "aba"), _pattern_run("zabzaba", "aba")],
        params={"pattern": tuple(letters("aba"))},
        source="pattern.lsrl",
        input_range=(1, 26),
        integer_inputs=True,
    ),
    Case(
        "frac_prevs",
        frac_prevs,
        [_frac_prevs_run("hello", "l"), _frac_prevs_run("lullaby lullaby", "l")],
        params={"target": letters("l")[0], "max_len": 16},
        source="frac_prevs.lsrl",
        input_range=(letters(" ")[0], 26),  # letters and the space
        integer_inputs=True,
        # count * (1/t): a count times a fraction, neither a 0/1 condition
        refused_by=refused_without_gates(NOT_A_CONDITION),
        # fractions, rounded; mamba's and hawk's stated float32 bounds (3.5) do not prove them
        float32_default="bounded",
        float32={"mamba": "unproven", "hawk": "unproven"},
    ),
    Case(
        "parity",
        parity,
        [_parity_run([1, 0, 1, 1, 0, 1]), _parity_run([1] * 12), _parity_run([0, 0, 1, 0, 1, 1, 1, 0, 1])],
        params={"max_len": 12},
        source="parity.lsrl",
        input_range=(0, 1),  # bits
        integer_inputs=True,
    ),
    Case(
        "dyck1",
        dyck1,
        [_dyck1_run("()())(()"), _dyck1_run("((()())())"), _dyck1_run(")(")],
        source="dyck1.lsrl",
        input_range=(-1, 1),  # -1 for ")", 1 for "("
        integer_inputs=True,
    ),
    Case(
        "gated_sum",
        gated_sum,
        [_gated_sum_run([3, -2, 5, 0, 1, -5, 4], 3), _gated_sum_run([-1, -4, 2], 3)],
        params={"divisor": 3},
        input_range=(-5, 5),
        integer_inputs=True,
        # a running sum of thirds, rounded; the bounds of the targets that rebuild the gate from
        # ReLUs (2300, from the large constant of the rebuilt gate) do not prove it
        float32_default="bounded",
        float32={"linear-rnn": "unproven", "rnn": "unproven"},
    ),
    Case(
        "majority",
        majority,
        [_majority_run([2, 1, 1, 3, 3, 3, 2, 2], 3), _majority_run([3, 3, 2, 2, 1, 1, 1], 3)],
        params={"vocab": 3},
        source="majority.lsrl",
        input_range=(1, 3),  # the vocabulary
        integer_inputs=True,
    ),
    Case(
        "majority_5",
        majority,
        [_majority_run([5, 4, 4, 5, 1, 2, 3, 5, 2, 2, 2], 5)],
        params={"vocab": 5},
        source="majority.lsrl",
        input_range=(1, 5),  # the vocabulary
        integer_inputs=True,
    ),
]
