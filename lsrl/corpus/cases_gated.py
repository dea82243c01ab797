"""Table rows for gated and matrix-valued states: ``h_t = a_t * h_{t-1} + b_t`` with a runtime gate
``a_t``, and ``S_t = diag(d_t) S_{t-1} + k_t v_t^T``.

Each program is also an ``examples/*.lsrl`` file. Expected outputs are plain Python on the task's
definition: a register holds what it was last told to write, a moving average moves, a recall
finds the value bound to a key. Only the targets with gated state layers (torch, jax and mlir) compute a
runtime gate; the others refuse it at the state's line.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Sequence

import lsrl
from lsrl.builder import solve
from lsrl.corpus.cases_lsrl import NOT_A_CONDITION
from lsrl.corpus.rows import Case, Run
from lsrl.ir.graph import Graph

HALF = Fraction(1, 2)
NO_GATED_LAYERS = "cannot compute gated_state (a gated layer)"
NO_DELTA_LAYERS = "cannot compute delta_state (a delta layer)"
UNBOUNDED_FACTOR = "the second is not bounded"  # a read of a delta-rule state, which has no bound
WITHOUT_GATED_LAYERS = ("linear-rnn", "rnn", "lstm", "gru", "mamba", "hawk")
WITHOUT_HEADS_LAYERS = ("lstm", "gru", "mamba", "hawk")  # delta and solve layers


def hold_register() -> Graph:
    p = lsrl.Program()
    x = p.input(2)
    write = x[0]
    p.output(p.state(0, lambda held: (1 - write) * held + write * x[1], dim=1, name="held"))
    return p.finish()


def _hold_register_run(tokens: Sequence[tuple[int, int]]) -> Run:
    held, expected = 0, []
    for write, value in tokens:
        held = value if write else held
        expected.append([held])
    return Run([list(t) for t in tokens], expected)


def moving_average() -> Graph:
    p = lsrl.Program()
    x = p.input(2)
    decay = x[0]
    p.output(p.state(0, lambda m: decay * m + (1 - decay) * x[1], dim=1, name="m"))
    return p.finish()


def _moving_average_run(tokens: Sequence[tuple[Fraction, Fraction]]) -> Run:
    m, expected = Fraction(0), []
    for decay, value in tokens:
        m = decay * m + (1 - decay) * value
        expected.append([m])
    return Run([[str(d), str(v)] for d, v in tokens], expected)


def mqar(vocab: int) -> Graph:
    """Multi-query associative recall with a linear-attention state (examples/mqar.lsrl)."""
    p = lsrl.Program()
    token = p.input(1)

    def onehot(x: lsrl.Value) -> lsrl.Value:
        return _onehot(x, vocab)

    seen_zero = lsrl.larger(lsrl.accumulate(lsrl.eq(token, 0)), HALF)
    writing = lsrl.and_(lsrl.not_(seen_zero), lsrl.larger(lsrl.mod_counter(p, 2), HALF))
    memory = p.matrix_state(1, onehot(lsrl.delay(token, 1)), token * writing)
    p.output(lsrl.read(memory, onehot(token)) * seen_zero, name="value")
    return p.finish()


def _mqar_run(pairs: Sequence[tuple[int, int]], queries: Sequence[int]) -> Run:
    bound = dict(pairs)  # (a key bound twice: the latest binding)
    tokens = [t for pair in pairs for t in pair] + [0] + list(queries)
    expected = [[0]] * (2 * len(pairs) + 1) + [[bound.get(q, 0)] for q in queries]
    return Run([[t] for t in tokens], expected)


def mqar_delta(vocab: int) -> Graph:
    """Recall where a key may be bound again, the latest binding winning: the delta rule
    (examples/mqar_delta.lsrl)."""
    p = lsrl.Program()
    token = p.input(1)
    seen_zero = lsrl.larger(lsrl.accumulate(lsrl.eq(token, 0)), HALF)
    writing = lsrl.and_(lsrl.not_(seen_zero), lsrl.larger(lsrl.mod_counter(p, 2), HALF))
    memory = p.delta_state(1, writing, _onehot(lsrl.delay(token, 1), vocab), token)
    p.output(lsrl.read(memory, _onehot(token, vocab)) * seen_zero, name="value")
    return p.finish()


def induction(vocab: int) -> Graph:
    """An induction head (examples/induction.lsrl)."""
    p = lsrl.Program()
    token = p.input(1)
    memory = p.delta_state(1, 1, _onehot(lsrl.delay(token, 1), vocab), token)
    p.output(lsrl.read(memory, _onehot(token, vocab)), name="next")
    return p.finish()


def _onehot(x: lsrl.Value, vocab: int) -> lsrl.Value:
    return lsrl.concat([lsrl.eq(x, i) for i in range(1, vocab + 1)])


def _induction_run(tokens: Sequence[int]) -> Run:
    expected = []
    for t, token in enumerate(tokens):
        earlier = [s for s in range(t) if tokens[s] == token]
        expected.append([tokens[earlier[-1] + 1] if earlier else 0])
    return Run([[v] for v in tokens], expected)


def mesa(keys: int, values: int, lambda_: object) -> Graph:
    """Mesa's readout G (H + lambda I)^-1 q over H = sum k k^T, G = sum v k^T (examples/mesa.lsrl)."""
    p = lsrl.Program()
    x = p.input(2 * keys + values)
    k, v, q = x[0:keys], x[keys:keys + values], x[keys + values:]
    h = p.matrix_state(1, k, k)
    g = p.matrix_state(1, k, v)
    p.output(lsrl.read(g, solve(h, q, lambda_)), name="o")
    return p.finish()


def _mesa_run(tokens: Sequence[Sequence[int]], keys: int, lambda_: object) -> Run:
    """Ridge regression of the values on the keys so far, answered for the query (sympy, exactly)."""
    import sympy

    expected, rows, answers = [], [], []
    for token in tokens:
        rows.append(token[:keys])
        answers.append(token[keys:-keys])
        k, v = sympy.Matrix(rows), sympy.Matrix(answers)
        solution = v.T * k * (k.T * k + sympy.Rational(lambda_) * sympy.eye(keys)).inv() * sympy.Matrix(token[-keys:])
        expected.append([Fraction(str(e)) for e in solution])
    return Run([[str(v) for v in token] for token in tokens], expected)


_random = random.Random(17)
_keys = _random.sample(range(1, 9), 6)
CASES: list[Case] = [
    Case("hold_register", hold_register,
         [_hold_register_run([(1, 1), (0, 0), (0, 1), (1, 0), (0, 1), (1, 1)]),
          _hold_register_run([(_random.randint(0, 1), _random.randint(0, 1)) for _ in range(40)])],
         source="gated/hold_register.lsrl", input_range=(0, 1), integer_inputs=True,
         refused_by={target: NO_GATED_LAYERS for target in WITHOUT_GATED_LAYERS}),
    Case("moving_average", moving_average,
         [_moving_average_run([(Fraction(1, 2), Fraction(1)), (Fraction(3, 4), Fraction(0)), (Fraction(0), Fraction(1, 3)),
                               (Fraction(1), Fraction(1)), (Fraction(1, 3), Fraction(2, 3))]),
          _moving_average_run([(Fraction(_random.randint(0, 8), 8), Fraction(_random.randint(0, 8), 8)) for _ in range(30)])],
         source="gated/moving_average.lsrl", input_range=(0, 1),
         # (1 - decay) * value multiplies two values neither of which is 0 or 1
         refused_by={**{target: NO_GATED_LAYERS for target in WITHOUT_GATED_LAYERS},
                     "linear-rnn": NOT_A_CONDITION, "rnn": NOT_A_CONDITION},
         float32_default="bounded"),
    Case("mqar", mqar,
         [_mqar_run([(3, 5), (1, 2), (7, 4)], [1, 3, 7, 8, 3, 0]),
          _mqar_run([(k, _random.randint(1, 8)) for k in _keys], [_random.randint(0, 8) for _ in range(12)])],
         params={"vocab": 8}, source="mqar.lsrl", input_range=(0, 8), integer_inputs=True),
    Case("mqar_delta", mqar_delta,
         [_mqar_run([(3, 5), (1, 2), (3, 4)], [1, 3, 7, 0]),
          _mqar_run([(_random.randint(1, 8), _random.randint(1, 8)) for _ in range(10)], [_random.randint(0, 8) for _ in range(12)])],
         params={"vocab": 8}, source="mqar_delta.lsrl", input_range=(0, 8), integer_inputs=True,
         refused_by={**{target: NO_DELTA_LAYERS for target in WITHOUT_HEADS_LAYERS},
                     "linear-rnn": UNBOUNDED_FACTOR, "rnn": UNBOUNDED_FACTOR},
         float32_default="unproven"),  # the range analysis does not bound a delta-rule state
    Case("induction", induction,
         [_induction_run([1, 2, 3, 1, 4, 1, 1, 2]), _induction_run([_random.randint(1, 8) for _ in range(40)])],
         params={"vocab": 8}, source="induction.lsrl", input_range=(1, 8), integer_inputs=True,
         refused_by={**{target: NO_DELTA_LAYERS for target in WITHOUT_HEADS_LAYERS},
                     "linear-rnn": UNBOUNDED_FACTOR, "rnn": UNBOUNDED_FACTOR},
         float32_default="unproven"),
    Case("mesa", mesa,
         [_mesa_run([(1, 0, 3, 1, 0), (0, 1, 5, 1, 1), (1, 1, 2, 2, 1)], 2, 1),
          _mesa_run([[_random.randint(-2, 2) for _ in range(5)] for _ in range(8)], 2, 1)],
         params={"keys": 2, "values": 1, "lambda_": 1}, source="mesa.lsrl", input_range=(-2, 2), integer_inputs=True,
         refused_by={**{target: "cannot compute solve (a solve layer)" for target in WITHOUT_HEADS_LAYERS},
                     "linear-rnn": NOT_A_CONDITION, "rnn": NOT_A_CONDITION},
         float32_default="unproven"),  # the range analysis does not bound a solution
]
