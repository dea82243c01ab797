"""Table rows whose constant state layers loop over time in the recurrent form: a diagonal part of
the transition that is neither 0 nor 1 (a halving memory) and a part that is no permutation (a
quarter turn with a sign), the stages that the chunk and scan forms rewrite (docs/schedules.md).

Expected outputs are plain Python on the recurrences' definitions, with fractions.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Sequence

import lsrl
from lsrl.corpus.rows import Case, Run, tokens
from lsrl.ir.graph import Graph


def decay_and_turn() -> Graph:
    """``m_t = m_{t-1} / 2 + x_t`` and ``r_t = Q r_{t-1} + (m_t, 0)``, Q the quarter turn
    ``(r0, r1) -> (-r1, r0)``: outputs ``m, r0, r1`` (``r`` reads ``m``: two loop stages)."""
    p = lsrl.Program()
    x = p.input(1)
    m = p.state(0, lambda prev: prev * Fraction(1, 2) + x, dim=1, name="m")
    r = p.state(0, lambda prev: lsrl.concat(m - prev[1], prev[0]), dim=2, name="r")
    p.output(lsrl.concat(m, r))
    return p.finish()


def _decay_and_turn_run(values: Sequence[int]) -> Run:
    m, r0, r1, expected = Fraction(0), 0, 0, []
    for x in values:
        m = m / 2 + x
        r0, r1 = m - r1, r0
        expected.append([m, r0, r1])
    return Run(tokens(values), expected)


NOT_HOLD_OR_FORGET = "its transition has an eigenvalue other than 0 and 1"
_random = random.Random(23)
CASES: list[Case] = [
    Case("decay_and_turn", decay_and_turn,
         [_decay_and_turn_run([1, 0, -1, 2, 3]),
          _decay_and_turn_run([_random.randint(-3, 3) for _ in range(37)])],
         source="schedules/decay_and_turn.lsrl", input_range=(-3, 3), integer_inputs=True,
         refused_by={target: NOT_HOLD_OR_FORGET for target in ("mamba", "hawk")},
         float32_default="unproven"),  # the range analysis does not bound the turning r
]
