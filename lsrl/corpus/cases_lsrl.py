"""Table rows for the programs of the LSRL paper and its notebooks, with independent expectations.

Each program is built from the standard library the way LSRL's own tests build it (the same
functions, thresholds and conditional variants, one library call per LSRL call), so that node
counts and compiled sizes can be compared with LSRL's. Expected outputs are plain Python arithmetic
on the task's definition: a counter counts, a cell lookup finds the cell, a table lookup looks up.
The library's formulas appear here only in the truth-table row, whose point is to pin them down.
"""

from __future__ import annotations

import itertools
import json
import random
from fractions import Fraction
from typing import Callable, Sequence

import lsrl
from lsrl.corpus.rows import EXAMPLES, Case, Run, tokens
from lsrl.ir.graph import Graph

HALF = Fraction(1, 2)  # thresholds are exact rationals: a float 0.5 would make the graph inexact
SCALE = 1000  # the library's default step scale (docs/language.md)
BIG = 10**10  # the library's default large constant

DATA = EXAMPLES / "data"

# Targets without multiplicative gates rebuild products from ReLUs (passes/degate.py), which needs
# one factor proven to be 0 or 1 and the other bounded; they refuse the programs where it is not.
GATELESS_TARGETS = ("linear-rnn", "rnn")
NOT_A_CONDITION = "neither factor is proven to be 0 or 1"


def refused_without_gates(message: str) -> dict[str, str]:
    return {target: message for target in GATELESS_TARGETS}


# --- more_ones ------------------------------------------------------------------------------------
def more_ones() -> Graph:
    """LSRL's first example: 1 while the prefix holds more ones than zeros."""
    p = lsrl.Program()
    x = p.input(1, tokens=2)
    ones = p.state(0, lambda prev: prev + x, name="ones")
    zeros = p.state(0, lambda prev: prev + (1 - x), name="zeros")
    p.output(lsrl.larger(ones, zeros))
    return p.finish()


def _more_ones_run(bits: Sequence[int]) -> Run:
    ones = zeros = 0
    expected = []
    for b in bits:
        ones += b
        zeros += 1 - b
        expected.append([1 if ones > zeros else 0])
    return Run(tokens(bits), expected)


# --- counters -------------------------------------------------------------------------------------
MOD_COUNTER_SIZES = (1, 2, 3, 5, 20)


def counters() -> Graph:
    """counter() and mod_counter(n) for each n of MOD_COUNTER_SIZES, side by side; the input is ignored."""
    p = lsrl.Program()
    p.input(1)
    p.output(lsrl.counter(p), name="counter")
    for n in MOD_COUNTER_SIZES:
        p.output(lsrl.mod_counter(p, n), name=f"mod{n}")
    return p.finish()


def _counters_run(length: int) -> Run:
    """Inputs vary (they must not matter); step t expects t and t mod n."""
    inputs = tokens([(7 * t) % 11 - 5 for t in range(length)])
    return Run(inputs, [[t] + [t % n for n in MOD_COUNTER_SIZES] for t in range(length)])


# --- truth tables of the standard library ---------------------------------------------------------
def gates() -> Graph:
    """Every comparison, logic function and conditional of the library on one input [x, y].

    The conditionals choose between the runtime values T = y + 5 and F = 2 - y, so both branches are
    live values (not constants the library could leave out) and differ from each other and from 0.
    """
    p = lsrl.Program()
    xy = p.input(2)
    x, y = xy[0], xy[1]
    t, f = y + 5, 2 - y
    p.output(lsrl.step(x), name="step")
    p.output(lsrl.bump(x, 1, 3), name="bump")
    p.output(lsrl.eq(x, y), name="eq")
    p.output(lsrl.neq(x, y), name="neq")
    p.output(lsrl.not_(x), name="not")
    p.output(lsrl.and_(x, y), name="and")
    p.output(lsrl.or_(x, y), name="or")
    p.output(lsrl.larger(x, y), name="larger")
    p.output(lsrl.smaller(x, y), name="smaller")
    p.output(lsrl.ifelse(x, t, f), name="ifelse")
    p.output(lsrl.ifelse_step(x, t, f), name="ifelse_step")
    p.output(lsrl.ifelse_mul(x, t, f), name="ifelse_mul")
    p.output(lsrl.ifeq(x, y, t, f), name="ifeq")
    return p.finish()


def _ramp(v: Fraction) -> Fraction:
    """step(v): 0 up to 0, rising with slope SCALE, 1 from 1/SCALE on."""
    return min(max(SCALE * v, Fraction(0)), Fraction(1))


def _relu(v: Fraction) -> Fraction:
    return max(v, Fraction(0))


def _pick(off: Fraction, v: Fraction) -> Fraction:
    """One branch of LSRL's ReLU conditional: relu(-BIG*off + v) - relu(-BIG*off - v)."""
    return _relu(-BIG * off + v) - _relu(-BIG * off - v)


def _gates_expected(x: Fraction, y: Fraction) -> list[Fraction]:
    """The outputs of ``gates`` from the language reference's (docs/language.md) and LSRL's definitions, in exact arithmetic."""
    t, f = y + 5, 2 - y
    eq = _ramp(1 - _ramp(x - y) - _ramp(y - x))
    return [
        _ramp(x),
        _ramp(x - 1) - _ramp(x - 3),
        eq,
        _ramp(_ramp(x - y) + _ramp(y - x)),
        1 - x,
        _relu(_ramp(x) + _ramp(y) - 1),
        _ramp(x + y),
        _ramp(x - y),
        _ramp(y - x),
        _pick(x, f) + _pick(1 - x, t),
        _pick(1 - _ramp(HALF - x), f) + _pick(1 - _ramp(x - HALF), t),
        x * t + (1 - x) * f,
        _pick(eq, f) + _pick(1 - eq, t),
    ]


GATE_POINTS = [
    # the truth tables
    (0, 0), (0, 1), (1, 0), (1, 1),
    # the step's ramp: half way, the corner, far below, just below 0
    (Fraction(1, 2000), 0), (Fraction(1, 1000), 0), (-1, 0), (Fraction(-1, 2000), 0),
    # eq/neq/larger/smaller around x - y = 0: inside the plateau, half way down, off
    (1 + Fraction(1, 2000), 1), (Fraction(1999, 2000000), 0), (Fraction(1, 1000), 0), (Fraction(-3, 2), -1),
    # bump(x, 1, 3): below, rising, on, at the top edge, on the falling ramp, above
    (Fraction(1, 2), 0), (1 + Fraction(1, 4000), 0), (2, 1), (3, 0), (Fraction(6001, 2000), 0), (4, 1),
    # conditionals around c = 1/2 (ifelse_step's switch) and outside [0, 1]
    (HALF, 0), (HALF + Fraction(1, 2000), 1), (HALF - Fraction(1, 1000), 1), (2, 0), (-2, 1),
]


def _gates_run() -> Run:
    points = [(Fraction(x), Fraction(y)) for x, y in GATE_POINTS]
    return Run([list(pt) for pt in points], [_gates_expected(x, y) for x, y in points])


# --- conditionals as LSRL's tests use them ----------------------------------------------------------
CONDITIONALS: dict[str, Callable] = {"relu": lsrl.ifelse, "mul": lsrl.ifelse_mul}


def _when(conditional: str, c: lsrl.Value, value: lsrl.Value) -> lsrl.Value:
    """``value`` where ``c`` is 1, else 0, as LSRL's tests write it: the false branch is the runtime
    ``value * 0`` (their "direct" mode with ``ifelse``, "multiplicative" mode with ``ifelse_mul``)."""
    if conditional not in CONDITIONALS:
        raise ValueError(f"conditional must be one of {sorted(CONDITIONALS)}, got {conditional!r}")
    return CONDITIONALS[conditional](c, value, value * 0)


def _ones(rows: int, cols: int) -> list[list[int]]:
    return [[1] * cols for _ in range(rows)]


# --- continuous universal approximation (LSRL Listing 1) -------------------------------------------
def continuous_ua(d_in: int, d_out: int, conditional: str) -> Graph:
    """The value of the grid cell that contains x, for a piecewise-constant function given in context.

    Tokens have length 1 + d_in + d_out: the first is [x, 0, ...], each later one describes a cell as
    [width, lower corner, value]. x is held in a state; each cell's value is added to the output
    state when x lies in the cell (a bump per coordinate, all of them on), so after the prompt the
    output is the value of the cell containing x. LSRL's counter starts at 1 (its thresholds are 1.5
    and 0.5, the second always passed); the library's starts at 0, so both thresholds are 1/2 and the
    x token is never taken for a cell.
    """
    p = lsrl.Program()
    token = p.input(1 + d_in + d_out)
    count = lsrl.counter(p).named("counter")  # 0 on the x token, then 1, 2, ... on the cells
    first = lsrl.smaller(lsrl.linear(count, _ones(d_in, 1)), HALF)
    x = lsrl.accumulate(_when(conditional, first, token[:d_in])).named("x")
    lower = token[1 : 1 + d_in]
    upper = lower + lsrl.linear(token[0], _ones(d_in, 1))
    inside = lsrl.bump(x, lower, upper)
    in_cell = lsrl.larger(lsrl.linear(inside, _ones(1, d_in)), d_in - HALF)
    take = lsrl.and_(in_cell, lsrl.larger(count, HALF))
    update = _when(conditional, lsrl.larger(lsrl.linear(take, _ones(d_out, 1)), HALF), token[1 + d_in :])
    p.output(lsrl.accumulate(update), name="y")
    return p.finish()


CELLS_PER_DIM = 4


def ua_target(center: Sequence[Fraction], d_out: int) -> list[Fraction]:
    """The target function sampled at cell centres: ((k+1) c_0 - c_last^2) / (1 + k + c_0) for output k."""
    return [((k + 1) * center[0] - center[-1] ** 2) / (1 + k + center[0]) for k in range(d_out)]


def continuous_prompt(x: Sequence[Fraction], d_in: int, d_out: int, n: int) -> list[list[Fraction]]:
    """[x, 0, ...] followed by one [1/n, lower corner, target at the centre] token per cell of the
    n^d_in grid on [0, 1]^d_in, in lexicographic order of the cell index (as LSRL's construct_prompt)."""
    width = Fraction(1, n)
    prompt = [list(x) + [Fraction(0)] * (1 + d_out)]
    for index in itertools.product(range(n), repeat=d_in):
        lower = [i * width for i in index]
        center = [(i + HALF) * width for i in index]
        prompt.append([width, *lower, *ua_target(center, d_out)])
    return prompt


def _continuous_run(x: Sequence[Fraction], d_in: int, d_out: int, n: int = CELLS_PER_DIM) -> Run:
    """Only the last step is checked: the target at the centre of the cell that holds x."""
    margin = Fraction(1, SCALE)
    for v in x:  # the program is exact only off the cell boundaries' ramps
        assert margin < v < 1 and all(abs(v - Fraction(k, n)) > margin for k in range(1, n)), v
    center = [(int(v * n) + HALF) / n for v in x]
    prompt = continuous_prompt(x, d_in, d_out, n)
    return Run(prompt, [None] * (len(prompt) - 1) + [ua_target(center, d_out)])


UA_POINTS = [
    (Fraction(1, 3), Fraction(5, 7)),
    (Fraction(1, 10), Fraction(9, 10)),
    (Fraction(1, 4) + Fraction(1, 500), Fraction(1, 4) - Fraction(1, 500)),  # 2/1000 off a boundary
    (Fraction(999, 1000) - Fraction(1, 10**4), Fraction(1, 500)),
    (Fraction(5, 8), Fraction(3, 8)),
]


def _continuous_case(d_in: int, d_out: int, conditional: str) -> Case:
    return Case(
        f"continuous_ua_{d_in}x{d_out}_{conditional}",
        continuous_ua,
        [_continuous_run(x, d_in, d_out) for x in UA_POINTS],
        params={"d_in": d_in, "d_out": d_out, "conditional": conditional},
        source="continuous_ua.lsrl",
        input_range=(-1, 1),
        # the in-cell condition rises continuously on the cell boundaries' ramps: not a 0/1 value
        refused_by=refused_without_gates(NOT_A_CONDITION) if conditional == "mul" else {},
        # real inputs on steep ramps and 1e10 conditionals: no float32 bound proves the outputs
        float32_default="unproven",
    )


# --- discrete token-to-token lookup (LSRL Listing 2) -----------------------------------------------
def tok2tok(seq_len: int, conditional: str, vocab: int = 27) -> Graph:
    """Look a key of ``seq_len`` tokens up in a key/value table given in context; emit its value.

    The prompt is the query key, then every key and value in turn (blocks of seq_len tokens, keys at
    the blocks where the step counter mod 2*seq_len >= seq_len). The query is stored in a state; each
    key token is compared with the query token at the same position, a shift register of the last
    seq_len comparisons detects a whole-key match, the step at which the matched key's value starts
    is stored, and the next seq_len tokens are copied into one register each. Every step outputs the
    register of its position in the block, so the last seq_len outputs spell the value of the query
    (the keys must be distinct: the start steps of several matches would add up).
    """
    n = seq_len
    p = lsrl.Program()
    token = p.input(1, tokens=vocab)
    count = lsrl.counter(p).named("counter")
    mod_n = lsrl.mod_counter(p, n).named("mod_n")
    mod_2n = lsrl.mod_counter(p, 2 * n).named("mod_2n")

    def at(i: int) -> lsrl.Value:
        """1 on position i of a block; built afresh at each use, as LSRL does (CSE merges them)."""
        return lsrl.and_(lsrl.larger(mod_n, i - HALF), lsrl.smaller(mod_n, i + HALF))

    is_prompt = lsrl.larger(count, n - HALF)
    is_compare = lsrl.larger(mod_2n, n - HALF)
    is_copy = lsrl.and_(is_prompt, lsrl.not_(is_compare))
    is_first_copy = lsrl.and_(is_copy, lsrl.smaller(mod_n, HALF))

    query_token = _when(conditional, lsrl.smaller(is_prompt, HALF), token)
    query = lsrl.accumulate(lsrl.concat([_when(conditional, at(i), query_token) for i in range(n)])).named("query")
    expected = lsrl.linear(lsrl.concat([_when(conditional, at(i), query[i]) for i in range(n)]), _ones(1, n))
    matching = lsrl.and_(
        lsrl.and_(lsrl.larger(token, expected - HALF), lsrl.smaller(token, expected + HALF)), is_compare
    )
    shift = [[1 if j == i + 1 else 0 for j in range(n + 1)] for i in range(n + 1)]
    buffer = p.linear_state(matching, shift, [[0]] * n + [[1]], [0] * (n + 1), name="buffer")
    all_matching = lsrl.larger(lsrl.linear(buffer, [[1] * n + [0]]), n - HALF)

    start_now = lsrl.and_(all_matching, is_first_copy)
    started_on = lsrl.accumulate(_when(conditional, start_now, count)).named("started_on")
    copy_and_on = lsrl.and_(is_copy, lsrl.smaller(count, started_on + n))
    positions = [at(i) for i in range(n)]
    registers = []
    for i in range(n):
        copy_here = lsrl.larger(lsrl.and_(copy_and_on, positions[i]), HALF)
        registers.append(lsrl.accumulate(_when(conditional, copy_here, token)).named(f"register[{i}]"))
    reads = [_when(conditional, lsrl.larger(positions[i], HALF), registers[i]) for i in range(n)]
    p.output(lsrl.linear(lsrl.concat(reads), _ones(1, n)), name="value")
    return p.finish()


Table = dict[tuple[int, ...], tuple[int, ...]]


def tok2tok_prompt(query: Sequence[int], table: Table) -> list[int]:
    """The query key followed by every key and value of the table, in order."""
    return [*query, *(t for key, value in table.items() for t in (*key, *value))]


def _tok2tok_run(query: tuple[int, ...], table: Table) -> Run:
    """Only the last len(query) steps are checked: they spell the query's value."""
    prompt = tok2tok_prompt(query, table)
    value = table[query]
    return Run(tokens(prompt), [None] * (len(prompt) - len(value)) + [[v] for v in value])


def random_table(seq_len: int, seed: int, pairs: int = 20, vocab: int = 10) -> Table:
    """LSRL's test data: distinct random keys, random values, tokens 0..vocab-1."""
    if pairs > vocab**seq_len:
        raise ValueError(f"{pairs} distinct keys of {seq_len} tokens need a vocabulary larger than {vocab}")
    rng = random.Random(seed)
    table: Table = {}
    while len(table) < pairs:
        key = tuple(rng.randrange(vocab) for _ in range(seq_len))
        table[key] = tuple(rng.randrange(vocab) for _ in range(seq_len))
    return table


def letters(word: str) -> tuple[int, ...]:
    """A word as tokens A=1 .. Z=26."""
    return tuple(ord(c) - ord("A") + 1 for c in word.upper())


def country_capitals() -> Table:
    """The 25 country/capital code pairs of LSRL's token-to-token notebook, as letter tokens, in the
    file's order (which is the prompt's order)."""
    pairs = json.loads((DATA / "country_capitals.json").read_text())["pairs"]
    return {letters(country): letters(capital) for country, capital in pairs.items()}


TOK2TOK_QUERIES = 4  # per random table: the first and last keys and two others
# Prompts of at most 256 tokens (the capitals' is 153): the count of the step where a matching key
# starts then stays below what float32 holds exactly once it is summed and compared.
TOK2TOK_MAX_LEN = 256
# torch, jax and mlir compute any length, so their ReLU conditionals keep big = 1e10 for the counts
# that grow without end; the targets bound to --max-len get a big fitted to the counts.
TOK2TOK_FLOAT32 = {"relu": {"torch": "unproven", "jax": "unproven", "mlir": "unproven"}, "mul": {}}


def _random_tok2tok_case(seq_len: int, conditional: str) -> Case:
    table = random_table(seq_len, seed=seq_len)
    keys = list(table)
    queries = [keys[0], keys[-1], *random.Random(-seq_len).sample(keys[1:-1], TOK2TOK_QUERIES - 2)]
    return Case(
        f"tok2tok_random_{seq_len}_{conditional}",
        tok2tok,
        [_tok2tok_run(q, table) for q in queries],
        params={"seq_len": seq_len, "conditional": conditional, "vocab": 10},
        source="tok2tok.lsrl",
        input_range=(0, 9),  # random_table's default vocabulary
        integer_inputs=True,
        max_len=TOK2TOK_MAX_LEN,
        float32=TOK2TOK_FLOAT32[conditional],
    )


# First, last, a capital equal to its country (LUX), and two countries that share a capital (VEN, WAL).
CAPITAL_QUERIES = ("CAN", "AUS", "ZIM", "LUX", "VEN", "WAL")


def _capitals_case(conditional: str) -> Case:
    table = country_capitals()
    return Case(
        f"tok2tok_capitals_{conditional}",
        tok2tok,
        [_tok2tok_run(letters(q), table) for q in CAPITAL_QUERIES],
        params={"seq_len": 3, "conditional": conditional},
        source="tok2tok.lsrl",
        input_range=(1, 26),  # letters
        integer_inputs=True,
        max_len=TOK2TOK_MAX_LEN,
        float32=TOK2TOK_FLOAT32[conditional],
    )


CASES: list[Case] = [
    Case(
        "more_ones",
        more_ones,
        [_more_ones_run([1, 0, 0, 1, 1, 1, 0]), _more_ones_run([0, 0, 0, 1, 1, 1, 1, 1, 0, 1])],
        source="more_ones.lsrl",
        input_range=(0, 1),  # bits
        integer_inputs=True,
    ),
    Case("counters", counters, [_counters_run(50)], source="counters.lsrl", input_range=(-5, 5), integer_inputs=True),
    Case("gates", gates, [_gates_run()], source="gates.lsrl", refused_by=refused_without_gates(NOT_A_CONDITION),
         float32_default="unproven"),  # a 1e10 conditional of an input that is not 0 or 1
    *(_continuous_case(2, d_out, c) for d_out in (1, 2) for c in CONDITIONALS),
    *(_random_tok2tok_case(n, c) for n in (2, 3, 4) for c in CONDITIONALS),
    *(_capitals_case(c) for c in CONDITIONALS),
]
