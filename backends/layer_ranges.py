"""The range analysis of a layered model, layer by layer: what the approximate targets (lstm, gru,
mamba, hawk) size their constructions and state their error bounds with, and what the rounding
analysis (``backends.rounding``) proves float computations exact with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lsrl.backends.target import Options, analysis_range
from lsrl.ir.graph import Graph
from lsrl.ir.heads import HEAD_OF_KIND, head_nodes
from lsrl.ir.layered import Layer, LayeredModel, map_nodes
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO
from lsrl.passes.lattice import Lattice
from lsrl.passes.ranges import Interval, analyze


@dataclass(frozen=True)
class LayerBounds:
    """Intervals of one layer's output units and, for relu, map, gate and gated layers, of what
    each unit reads (``operands[0]``: the ReLU's or function's argument, a product's first factor
    or a gated state's gate; ``operands[1]``: the second factor or the gated state's drive), with
    whether those take only integer values; the lattices of both (``passes.lattice``), and for a
    state layer the interval and lattice of its drive ``W x + b``."""

    values: tuple[Interval, ...]
    operands: tuple[tuple[Interval, ...], ...] = ()
    integer: tuple[tuple[bool, ...], ...] = ()
    values_integer: tuple[bool, ...] = ()
    lattices: tuple[Lattice | None, ...] = ()
    operand_lattices: tuple[tuple[Lattice | None, ...], ...] = ()
    drive: tuple[Interval, ...] = ()
    drive_lattices: tuple[Lattice | None, ...] = ()


def layer_bounds(model: LayeredModel, options: Options) -> list[LayerBounds]:
    """The range analysis (``passes.ranges``) of the layered model, for inputs in
    ``analysis_range(options)`` and sequences of at most ``options.max_len`` steps.

    The model is spelled as a graph like ``LayeredModel.to_graph`` does, except that a state
    layer is one state node per group of units coupled through ``A``: the analysis bounds a state
    node by iterating its interval recurrence until it repeats, which a modulo counter does, but
    not while it shares a node with a counter that keeps growing.
    """
    g = Graph()
    previous = g.add("input", [], model.d_in, name="x").id
    nodes: list[tuple[int, tuple[int, ...], int | None]] = []  # per layer: its value node, what its units read, its drive
    for layer in model.layers:
        a = layer.attrs
        operand_rows = {
            "relu": [("W", "b")], "map": [("W", "b")], "gate": [("W", "b"), ("W2", "b2")],
            "gated": [("W2", "b2"), ("W", "b")],  # the gate, then the drive
            "matrix": [("W", "b")], "delta": [("W", "b")], "solve": [("W", "b")],
        }.get(layer.kind, [])
        reads = tuple(
            g.add("affine", [previous], layer.width, {"weights": (a[w],), "bias": a[b]}).id for w, b in operand_rows
        )
        drive = None
        if layer.kind == "affine":
            value = g.add("affine", [previous], layer.width, {"weights": (a["W"],), "bias": a["b"]}).id
        elif layer.kind == "state":
            drive = g.add("affine", [previous], layer.width, {"weights": (a["W"],), "bias": a["b"]}).id
            value = _split_state(g, previous, layer)
        elif layer.kind == "map":
            value = map_nodes(g, reads[0], a["functions"])
        elif layer.kind == "gated":
            value = g.add("gated_state", list(reads), layer.width, {"init": a["init"]}).id
        elif layer.kind in HEAD_OF_KIND:
            value = head_nodes(g, reads[0], layer.kind, a["heads"], layer.width, a.get("shift", ()), a.get("steps", (0,))[0])
        else:
            value = g.add({"relu": "relu", "gate": "mul"}[layer.kind], list(reads), layer.width).id
        nodes.append((value, reads, drive))
        previous = value
    ranges = analyze(g, [analysis_range(options)] * model.d_in, options.max_len, options.integer_inputs)
    return [
        LayerBounds(
            ranges[value], tuple(ranges[n] for n in reads), tuple(ranges.integer(n) for n in reads),
            ranges.integer(value), ranges.lattice(value), tuple(ranges.lattice(n) for n in reads),
            ranges[drive] if drive is not None else (), ranges.lattice(drive) if drive is not None else (),
        )
        for value, reads, drive in nodes
    ]


def input_bounds(model: LayeredModel, options: Options) -> LayerBounds:
    """The interval and lattice of each input unit that ``layer_bounds`` assumes."""
    lattice = Lattice.of(0, 1) if options.integer_inputs else None
    return LayerBounds(tuple(Interval(*analysis_range(options)) for _ in range(model.d_in)),
                       lattices=(lattice,) * model.d_in)


def _split_state(g: Graph, previous: int, layer: Layer) -> int:
    """The state layer as one state node per group of units coupled through ``A``, and an affine
    node that puts their units back in the layer's order; returns that node."""
    a = layer.attrs
    parts, placements = [], []
    for units in a["A"].coupled_groups():
        attrs = {
            "A": _block(a["A"], units, square=True), "B": (_block(a["W"], units, square=False),),
            "bias": tuple(a["b"][u] for u in units), "init": tuple(a["init"][u] for u in units),
        }
        parts.append(g.add("state", [previous], len(units), attrs).id)
        placements.append(Matrix.selection(layer.width, len(units), [(u, k) for k, u in enumerate(units)]))
    return g.add("affine", parts, layer.width, {"weights": tuple(placements), "bias": (ZERO,) * layer.width}).id


def _block(matrix: Matrix, units: Sequence[int], square: bool) -> Matrix:
    """The rows ``units`` of ``matrix`` and, if ``square``, only their columns (the units of a
    group are coupled to no others, so no entry is left out)."""
    position = {u: k for k, u in enumerate(units)}
    entries = {
        (position[i], position[j] if square else j): v for (i, j), v in matrix.entries.items() if i in position
    }
    return Matrix(len(units), len(units) if square else matrix.cols, entries)
