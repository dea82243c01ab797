"""Passes: functions from graph to graph that keep the interpreter's outputs, and the lowering.

``PIPELINE`` lists the graph passes in the order they run. ``run_pipeline(graph)`` repeats it
until the graph stops changing (the canonical graph); ``run_pipeline(graph, until=NAME)`` runs one
round up to and including the pass ``NAME`` (``lsrl ir --after NAME``). ``lower`` canonicalizes,
fits the constants of the library's comparisons and conditionals to the lattices the range analysis
proves (``passes.constants``), expands them into ReLUs (``passes.expand``), canonicalizes again,
rebuilds multiplicative gates from ReLUs for targets that have none (``passes.degate``), and
then runs ``linearize``, which turns the graph into the layered model (``ir.layered``) every
backend starts from.
"""

from __future__ import annotations

from lsrl.ir.graph import Graph
from lsrl.ir.layered import LayeredModel
from lsrl.passes.canonicalize import PIPELINE, canonicalize
from lsrl.passes.constants import fit_constants
from lsrl.passes.degate import rebuild_gates as _rebuild_gates
from lsrl.passes.expand import expand_matrix_states, expand_pointwise
from lsrl.passes.linearize import linearize as _linearize
from lsrl.passes.ranges import analyze, declared_promises

PASS_NAMES = tuple(name for name, _ in PIPELINE)


def run_pipeline(graph: Graph, until: str | None = None) -> Graph:
    """The canonical graph, or the graph after one round of ``PIPELINE`` up to ``until``."""
    if until is None:
        return canonicalize(graph)
    if until not in PASS_NAMES:
        raise ValueError(f"unknown pass {until!r}; the passes are {', '.join(PASS_NAMES)}")
    for name, run_pass in PIPELINE:
        graph = run_pass(graph)
        if name == until:
            break
    return graph


def prepare(
    graph: Graph,
    input_range: object = None,
    max_len: int | None = None,
    rebuild_gates: bool = False,
    integer_inputs: bool = False,
    matrix_heads: bool = True,
) -> Graph:
    """The graph ``linearize`` schedules: canonical, its reads of matrix states kept for the
    states' heads or expanded into products, and (without ``matrix_heads``) its matrix states
    expanded into gated states (``passes.expand``), its comparisons and conditionals fitted to
    the lattices the range analysis proves and expanded into ReLUs, and (``rebuild_gates``) its
    products rebuilt from ReLUs (raises ``LsrlError`` where the range analysis cannot show that
    this is exact).

    ``input_range`` (a ``(lo, hi)`` pair, or one per input unit), ``max_len`` and
    ``integer_inputs`` are what the range analysis may assume, on top of the tokens the program's
    input declares (``declared_promises``); the default assumes nothing more.
    """
    input_range, integer_inputs = declared_promises(graph, input_range, integer_inputs)
    canonical = canonicalize(expand_matrix_states(run_pipeline(graph), matrix_heads))
    facts = analyze(canonical, input_range, max_len, integer_inputs)
    canonical = canonicalize(expand_pointwise(fit_constants(canonical, facts)))
    if rebuild_gates:
        canonical = canonicalize(_rebuild_gates(canonical, input_range, max_len, integer_inputs))
    return canonical


def lower(
    graph: Graph,
    input_range: object = None,
    max_len: int | None = None,
    rebuild_gates: bool = False,
    integer_inputs: bool = False,
    matrix_heads: bool = True,
) -> LayeredModel:
    """The layered model of ``graph``: ``prepare`` (same arguments), then ``linearize``."""
    input_range, integer_inputs = declared_promises(graph, input_range, integer_inputs)
    prepared = prepare(graph, input_range, max_len, rebuild_gates, integer_inputs, matrix_heads)
    return _linearize(prepared, input_range, max_len)


__all__ = ["PASS_NAMES", "PIPELINE", "lower", "prepare", "run_pipeline"]
