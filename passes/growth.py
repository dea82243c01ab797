"""Growth: expansions of a layered model that keep the function it computes (docs/growth.md).

Each expansion is a pure function ``expand(model, expansion, seed, init) -> model``: widen a layer,
add state units, insert a layer that computes the identity, split a unit into copies (Net2Net).
As in Gesmundo and Maile's function-preserving expansions, only the weights the proof needs are
constrained (zero, a copy, or a sum); every other new weight is drawn from ``init``
(``ir.free_weights``), so the grown model is a starting point for training, not a padded copy.
Free weights are dyadic rationals, so exact mode checks that the function is unchanged.

Composition of two models (parallel and sequential) is ``passes/compose.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
from gmpy2 import mpq
from lsrl.ir import heads
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import DEFAULT_INITIALIZER, Initializer
from lsrl.ir.graph import Label
from lsrl.ir.layered import (
    CARRY,
    COPY,
    FREE,
    FUNCTIONS,
    IDENTITY,
    INTEGERS,
    LAYER_KINDS,
    PART,
    Layer,
    LayeredModel,
    UnitLabel,
)
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO

STATE_KINDS = ("state", "gated")
IDENTITY_KINDS = ("affine", "relu", "gate", "map", "state", "gated")  # the kinds insert_identity builds


@dataclass(frozen=True)
class Widen:
    """``units`` new units in layer ``layer``: incoming weights free, read by nothing."""

    layer: int
    units: int


@dataclass(frozen=True)
class AddState:
    """``units`` new state units in the state (or gated) layer ``layer``: their input weights,
    transition rows, bias and initial value free, read by nothing."""

    layer: int
    units: int


@dataclass(frozen=True)
class InsertIdentity:
    """A layer of ``kind`` computing the identity, inserted before layer ``position`` (after the
    last layer where ``position`` is the number of layers)."""

    position: int
    kind: str


@dataclass(frozen=True)
class Split:
    """Unit ``unit`` of layer ``layer`` split into ``copies`` units with its incoming weights, whose
    outgoing weights are fractions of the original that sum to 1 (Net2Net)."""

    layer: int
    unit: int
    copies: int = 2


Expansion = Union[Widen, AddState, InsertIdentity, Split]


def expand(model: LayeredModel, expansion: Expansion, seed: int | Sequence[int] = 0,
           init: Initializer = DEFAULT_INITIALIZER) -> LayeredModel:
    """``model`` grown by ``expansion``, its free weights drawn from ``init`` seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    if isinstance(expansion, Widen):
        return widen(model, expansion.layer, expansion.units, rng, init)
    if isinstance(expansion, AddState):
        if _layer(model, expansion.layer).kind not in STATE_KINDS:
            raise LsrlError(f"layer {expansion.layer} is a {model.layers[expansion.layer].kind} layer: state units go "
                            "in a state or gated layer (insert one first, as an identity layer of kind state)")
        return widen(model, expansion.layer, expansion.units, rng, init)
    if isinstance(expansion, InsertIdentity):
        return insert_identity(model, expansion.position, expansion.kind, rng, init)
    if isinstance(expansion, Split):
        return split(model, expansion.layer, expansion.unit, expansion.copies, rng, init)
    raise TypeError(f"not an expansion: {expansion!r}")


def grow(model: LayeredModel, expansions: Sequence[Expansion], seed: int = 0,
         init: Initializer = DEFAULT_INITIALIZER) -> LayeredModel:
    """The expansions applied in order, the k-th seeded by ``(seed, k)``."""
    for k, expansion in enumerate(expansions):
        model = expand(model, expansion, (seed, k), init)
    return model


# --- widen ---------------------------------------------------------------------------------------
def widen(model: LayeredModel, index: int, count: int, rng: np.random.Generator, init: Initializer) -> LayeredModel:
    """Proof: every weight that reads a new unit (the next layer's columns, and in a state layer the
    old units' transition columns) is zero, so no old unit and no output depends on the new ones."""
    layer = _layer(model, index)
    if index == len(model.layers) - 1:
        raise LsrlError(f"layer {index} is the output layer: widening it would change the output's width")
    if count < 1:
        raise LsrlError("widening adds at least one unit")
    old, new, reads = layer.width, layer.width + count, _input_width(model, index)
    attrs = {}
    for name, kind in LAYER_KINDS[layer.kind].items():
        value = layer.attrs[name]
        if name == "A":  # new rows free over every unit; the old rows read no new unit
            attrs[name] = _with_free_rows(value, new, old, new, rng, init)
        elif isinstance(value, Matrix):
            attrs[name] = _with_free_rows(value, reads, old, new, rng, init)
        elif kind == FUNCTIONS:  # float functions are irrational: a free unit is linear
            attrs[name] = value + (IDENTITY,) * count
        elif kind == INTEGERS:
            attrs[name] = value
        else:  # biases, initial values, and a solve layer's shifts (read by heads only)
            attrs[name] = value + tuple(init.exact(rng, count))
    units = layer.units + tuple(UnitLabel(Label(FREE, u), FREE) for u in range(old, new))
    reader = model.layers[index + 1]
    padding = Matrix(old, new, {(i, i): ONE for i in range(old)})  # the old units; 0 times each new one
    return _replace(model, index, [Layer(layer.kind, attrs, units)], _read_through(reader, padding))


# --- identity layers -------------------------------------------------------------------------------
def insert_identity(model: LayeredModel, position: int, kind: str, rng: np.random.Generator,
                    init: Initializer) -> LayeredModel:
    """Proof per kind (docs/growth.md): each builds ``y`` with ``x = R y`` for a fixed matrix ``R``
    (the identity, or for a ReLU pair ``relu(v) - relu(-v) = v``), and the layer that read ``x``
    reads ``y`` through ``W R``."""
    if not 0 <= position <= len(model.layers):
        raise LsrlError(f"cannot insert a layer at position {position}: the model has {len(model.layers)} layers")
    if kind not in IDENTITY_KINDS:
        raise LsrlError(f"no identity layer of kind {kind!r}: expected one of {', '.join(IDENTITY_KINDS)}")
    width = model.d_in if position == 0 else model.layers[position - 1].width
    labels = _carried_labels(model, position)
    eye, zeros = Matrix.eye(width), Matrix.zeros(width, width)
    back = eye  # R: what was read, from the new layer's units
    if kind == "relu":
        layer, back = _relu_identity(model, position, labels)
    elif kind == "state":  # h = 0 h_prev + x: the initial value is never read, so it is free
        layer = Layer(kind, {"A": zeros, "W": eye, "b": _zeros(width), "init": tuple(init.exact(rng, width))}, labels)
    elif kind == "gated":  # h = 0 * h_prev + x: likewise
        layer = Layer(kind, {"W": eye, "b": _zeros(width), "W2": zeros, "b2": _zeros(width),
                             "init": tuple(init.exact(rng, width))}, labels)
    elif kind == "gate":  # x * 1
        layer = Layer(kind, {"W": eye, "b": _zeros(width), "W2": zeros, "b2": (ONE,) * width}, labels)
    elif kind == "map":
        layer = Layer(kind, {"W": eye, "b": _zeros(width), "functions": (IDENTITY,) * width}, labels)
    else:
        layer = Layer(kind, {"W": eye, "b": _zeros(width)}, labels)
    if position == len(model.layers):
        if layer.width != width:
            raise LsrlError("a ReLU identity layer after the output layer needs every output proven non-negative "
                            "(the output of a ReLU layer); insert it before a layer, or insert an affine one")
        return LayeredModel(model.d_in, model.layers + [layer], model.input_labels, model.output_labels)
    return _replace(model, position, [layer, _read_through(model.layers[position], back)], None, span=1)


def _relu_identity(model: LayeredModel, position: int, labels: tuple[UnitLabel, ...]) -> tuple[Layer, Matrix]:
    """One unit ``relu(v) = v`` where ``v`` is proven non-negative (the output of a ReLU layer),
    else the pair ``relu(v)``, ``relu(-v)``."""
    after_relu = position > 0 and model.layers[position - 1].kind == "relu"
    rows, back, units = {}, {}, []
    for j, label in enumerate(labels):
        rows[(len(units), j)] = ONE
        back[(j, len(units))] = ONE
        if after_relu or label.rectified:
            units.append(label)
            continue
        units.append(dataclasses.replace(label, rectified=True))
        rows[(len(units), j)] = -ONE
        back[(j, len(units))] = -ONE
        units.append(dataclasses.replace(label, rectified=True, sign=-label.sign))
    width = len(labels)
    layer = Layer("relu", {"W": Matrix(len(units), width, rows), "b": _zeros(len(units))}, tuple(units))
    return layer, Matrix(width, len(units), back)


def _carried_labels(model: LayeredModel, position: int) -> tuple[UnitLabel, ...]:
    if position == 0:
        return tuple(UnitLabel(label, CARRY, unit=label.index) for label in model.input_labels)
    return tuple(u if u.role in (FREE, PART) else dataclasses.replace(u, role=CARRY)
                 for u in model.layers[position - 1].units)


# --- split (Net2Net) ---------------------------------------------------------------------------------
def split(model: LayeredModel, index: int, unit: int, copies: int, rng: np.random.Generator,
          init: Initializer) -> LayeredModel:
    """Proof: the copies have the unit's incoming weights (``D`` duplicates rows), so they hold its
    value; whatever read the unit reads the copies with fractions summing to 1 (``P``, ``P D = I``).
    In a state layer ``A' = D A P`` keeps ``h' = D h`` at every step."""
    layer = _layer(model, index)
    if index == len(model.layers) - 1:
        raise LsrlError(f"layer {index} is the output layer: splitting a unit would change the output's width")
    if layer.kind in heads.HEAD_OF_KIND:
        raise LsrlError(f"layer {index} is a {layer.kind} layer: its heads own their units, which cannot be split")
    if not 0 <= unit < layer.width or copies < 2:
        raise LsrlError(f"cannot split unit {unit} of layer {index} ({layer.width} units) into {copies} copies")
    old, new = layer.width, layer.width + copies - 1
    duplicate = Matrix(new, old, {**{(i, i): ONE for i in range(old)}, **{(i, unit): ONE for i in range(old, new)}})
    shares = [mpq(1, copies) + w for w in init.exact(rng, copies - 1)]  # free: any fractions summing to 1
    first = ONE - sum(shares, ZERO)
    combine = Matrix(old, new, {**{(i, i): ONE for i in range(old) if i != unit}, (unit, unit): first,
                                **{(unit, old + m): s for m, s in enumerate(shares)}})
    attrs = {}
    for name, value in layer.attrs.items():
        if name == "A":
            attrs[name] = duplicate @ value @ combine
        elif isinstance(value, Matrix):
            attrs[name] = duplicate @ value
        else:
            attrs[name] = value + (value[unit],) * (copies - 1)
    units = layer.units + (dataclasses.replace(layer.units[unit], role=COPY),) * (copies - 1)
    return _replace(model, index, [Layer(layer.kind, attrs, units)], _read_through(model.layers[index + 1], combine))


# --- helpers -----------------------------------------------------------------------------------------
def _layer(model: LayeredModel, index: int) -> Layer:
    if not 0 <= index < len(model.layers):
        raise LsrlError(f"no layer {index}: the model has {len(model.layers)} layers (0 to {len(model.layers) - 1})")
    return model.layers[index]


def _input_width(model: LayeredModel, index: int) -> int:
    return model.d_in if index == 0 else model.layers[index - 1].width


def _zeros(n: int) -> tuple:
    return (ZERO,) * n


def _with_free_rows(matrix: Matrix, cols: int, old: int, new: int, rng: np.random.Generator,
                    init: Initializer) -> Matrix:
    """``matrix`` with ``cols`` columns (the added ones zero) and rows ``old..new-1`` drawn."""
    draws = iter(init.exact(rng, (new - old) * cols))
    entries = {**matrix.entries, **{(r, c): next(draws) for r in range(old, new) for c in range(cols)}}
    return Matrix(new, cols, entries)


def _read_through(reader: Layer, back: Matrix) -> Layer:
    """``reader`` reading ``y`` where it read ``x = back y``: its input weights times ``back``."""
    attrs = {name: value @ back if isinstance(value, Matrix) and name != "A" else value
             for name, value in reader.attrs.items()}
    return Layer(reader.kind, attrs, reader.units)


def _replace(model: LayeredModel, index: int, layers: list[Layer], reader: Layer | None, span: int = 2) -> LayeredModel:
    """``model`` with its layers ``index..index+span-1`` replaced by ``layers`` (and ``reader``)."""
    replaced = layers + ([reader] if reader is not None else [])
    return LayeredModel(model.d_in, model.layers[:index] + replaced + model.layers[index + span:],
                        model.input_labels, model.output_labels)
