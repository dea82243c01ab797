"""The integer token rows of the shared table as token programs, for ``--format hf``
(tests/test_hf.py, benchmarks/hf_checkpoints.py): a checkpoint reads one token id and writes one
per step, so a row with several outputs is one token program per output it names, and a row whose
program declares no tokens gets ``vocab``, as ``--vocab`` gives it on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from lsrl.corpus import case
from lsrl.ir.graph import Graph
from lsrl.ir.numbers import exact


@dataclass(frozen=True)
class Row:
    """A table row as a token program: its output ``output`` alone, the tokens ``vocab`` (None:
    the program declares them), and the sequences to run (None: the row's own)."""

    name: str
    output: int = 0
    vocab: int | None = None
    max_len: int | None = None
    runs: tuple[tuple[int, ...], ...] | None = None

    @property
    def key(self) -> str:
        return f"{self.name}[{self.output}]"

    def graph(self) -> Graph:
        graph = case(self.name).graph()
        graph.outputs = [graph.outputs[self.output]]
        if self.vocab is not None:
            graph.input.attrs["tokens"] = (exact(0), exact(self.vocab))
        return graph

    def sequences(self) -> list[list[int]]:
        if self.runs is not None:
            return [list(r) for r in self.runs]
        return [[int(Fraction(str(token[0]))) for token in r.inputs] for r in case(self.name).runs]

    def options(self, **overrides: object):
        """The row's options for its checkpoint (``overrides`` on top)."""
        stated = {"format": "hf"} if self.max_len is None else {"format": "hf", "max_len": self.max_len}
        return case(self.name).options(**{**stated, **overrides})


COUNTER_INPUTS = (tuple((7 * t) % 6 for t in range(50)),)  # ignored by the program; in the row's range 0..5
ROWS = [
    Row("more_ones"),
    *(Row("counters", output, vocab=64, max_len=64, runs=COUNTER_INPUTS) for output in (0, 2, 5)),  # t, t mod 2, t mod 20
    Row("parity"),
    Row("dyck1_nested", 0, vocab=3), Row("dyck1_nested", 1, vocab=3),  # Dyck-1 over token ids: 1 "(", 2 ")"
    Row("majority"), Row("majority_5"),
    Row("tok2tok_capitals_mul"), Row("tok2tok_capitals_relu"),
    # held-out style token programs: pattern detection, a nested comparison, a count, a random table
    Row("pattern_abc"), Row("pattern_aba"), Row("nested_eq_count", vocab=2),
    Row("accumulated_condition", vocab=64, max_len=63), Row("tok2tok_random_2_mul"),
]
