"""The shape of a row of the shared test table (``lsrl/corpus/__init__.py`` collects the rows).

A row's program comes from the Python builder (``build``, taking the row's params) and, where an
``examples/NAME.lsrl`` version exists, from the language too (``source``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from lsrl.ir.graph import Graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"  # the corpus reads the checkout's examples

Token = Sequence[object]  # numbers: int, Fraction or "p/q" strings


@dataclass(frozen=True)
class Run:
    """One input sequence and the expected output at each step (None: the step is not checked)."""

    inputs: Sequence[Token]
    expected: Sequence[Optional[Sequence[object]]]


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[..., Graph]
    runs: Sequence[Run]
    params: dict = field(default_factory=dict)
    source: Optional[str] = None  # file name under examples/
    tolerance: float = 0.0  # absolute, for programs that are approximate by construction
    # What every run's inputs satisfy, which targets may assume: a (lo, hi) range of every input
    # value, and whether they are integers (lets targets without gates rebuild them from ReLUs).
    input_range: Optional[tuple] = None
    integer_inputs: bool = False
    max_len: Optional[int] = None  # the longest sequence it states (None: the targets' default)
    # target name -> part of the message with which it must refuse the program
    refused_by: Mapping[str, str] = field(default_factory=dict)
    # What the compiler proves of float32 per target (lsrl.backends.verdict): "exact", "bounded" or
    # "unproven" (it then warns); targets not named here get float32_default.
    float32: Mapping[str, str] = field(default_factory=dict)
    float32_default: str = "exact"
    # A float row (lsrl/corpus/cases_layers.py): the line of its source where exact mode refuses it
    exact_refusal: Optional[int] = None

    def options(self, **overrides: Any):
        """The compile options of what the row states about its inputs (``overrides`` on top)."""
        from lsrl.backends.target import DEFAULT_MAX_LEN, Options

        stated = {"input_range": self.input_range, "integer_inputs": self.integer_inputs,
                  "max_len": self.max_len or DEFAULT_MAX_LEN}
        return Options(**{**stated, **overrides})

    def float32_verdict(self, target: str) -> str:
        """The row's stated float32 verdict on ``target`` ("refused" where it must refuse)."""
        if target in self.refused_by:
            return "refused"
        return self.float32.get(target, self.float32_default)

    @property
    def source_path(self) -> Optional[Path]:
        return EXAMPLES / self.source if self.source else None

    def graph(self) -> Graph:
        return self.build(**self.params)

    def program(self) -> Graph:
        """The row's program as users compile it: from its .lsrl source where it has one (so
        diagnostics and warnings carry source locations), else from the builder."""
        if self.source is None:
            return self.graph()
        from lsrl.load import compile_file

        return compile_file(self.source_path, self.params)

    def references(self, graph: Optional[Graph] = None) -> list[tuple[list[list[float]], Any]]:
        """Per run: its inputs as floats and the exact interpreter's outputs ``[time, d_out]`` as
        floats (float64 where the program has irrational weights): what compiled targets must give."""
        import numpy as np

        from lsrl.ir.interpret import NotExactError, run

        graph = graph or self.program()
        out = []
        for r in self.runs:
            inputs = [[as_fraction(v) for v in token] for token in r.inputs]
            floats = [[float(v) for v in token] for token in inputs]
            try:
                want = run(graph, inputs, exact=True)[0].astype(np.float64)
            except NotExactError:
                want = run(graph, floats)[0]
            out.append((floats, want))
        return out


def has_float_weights(graph: Graph) -> bool:
    """Whether the graph holds float (irrational) weights, so that it has no exact reference."""
    from lsrl.ir.matrix import Matrix

    def floats(value: object) -> bool:
        if isinstance(value, Matrix):
            return not value.exact
        if isinstance(value, tuple):
            return any(floats(v) for v in value)
        return type(value) is float

    return any(floats(v) for node in graph for v in node.attrs.values())


def tokens(values: Sequence[object]) -> list[list[object]]:
    """A sequence of scalar tokens as tokens of length 1."""
    return [[v] for v in values]


def as_fraction(x: object) -> Fraction:
    return Fraction(str(x))
