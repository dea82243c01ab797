"""Stacking the layered model into architectures that repeat one kind of layer.

The architecture targets (``linear-rnn``, ``rnn``, and the gated RNNs) are stacks of layers, each
reading the previous layer's output, followed by a linear readout (``nn.Linear``). The layered
model is nearly such a stack already; :func:`stack` rewrites what differs, keeping the function
exactly (every weight stays exact; ``LayeredModel.run(exact=True)`` gives the same outputs):

- gate layers: none of these targets multiplies two runtime values. The driver rebuilds products
  from ReLUs before linearizing (``passes.degate``); a model that still has a gate layer is refused.
- affine layers between other layers: linearize makes one only for a value that a reader scales
  up by a large constant (LSRL's conditionals multiply a 0/1 condition by 1e10), so that float64
  rounds the value on its own scale (``passes.linear_forms``). Folding it into the reader's input
  weights would put the large constant into a sum with the reader's small terms and round them
  away. So each unit v is held in a ReLU layer as ``relu(v)`` and ``relu(-v)``, and the next layer
  reads ``relu(v) - relu(-v) = v``, exact in floating point too (one of the two is 0).
- the end: a model ending in a ReLU or state layer gets an identity readout.
- a model that is a single affine map of the input holds the input in a ReLU layer the same way,
  since the targets need at least one layer before the readout.

:class:`Decoding` and :func:`block_matrix` are the two tools targets use to lay a layer's units out
in their own form (the Elman target holds a state as its positive and negative parts).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, add


def stack(model: LayeredModel, target: str) -> LayeredModel:
    """``model`` as ReLU and state layers followed by one affine readout, computing the same
    function; raises ``ValueError`` for a gate layer (``target`` names the target in the message)."""
    for i, layer in enumerate(model.layers):
        if layer.kind == "gate":
            raise ValueError(
                f"layer {i} of the layered model is a gate layer, which target '{target}' cannot "
                "compute: lower the program with rebuild_gates=True (lsrl.targets does)"
            )
    layers = list(model.layers)
    if len(layers) == 1 and layers[0].kind == "affine":  # an identity layer first, held as pairs below
        identity = {"W": Matrix.eye(model.d_in), "b": (ZERO,) * model.d_in}
        layers.insert(0, Layer("affine", identity, tuple(UnitLabel(label) for label in model.input_labels)))
    stacked: list[Layer] = []
    for layer in layers:
        if stacked and stacked[-1].kind == "affine":  # held as pairs: read their differences
            layer = _reading_differences(layer)
            stacked[-1] = _held_as_pairs(stacked[-1].attrs["W"], stacked[-1].attrs["b"], stacked[-1].units)
        stacked.append(layer)
    if stacked[-1].kind != "affine":
        width = stacked[-1].width
        identity = {"W": Matrix.eye(width), "b": (ZERO,) * width}
        stacked.append(Layer("affine", identity, stacked[-1].units))
    return LayeredModel(model.d_in, stacked, model.input_labels, model.output_labels)


def _held_as_pairs(weight: Matrix, bias: Sequence[Number], units: Sequence[UnitLabel]) -> Layer:
    """The ReLU layer ``relu(W x + b)``, ``relu(-(W x + b))`` (all positive parts, then all negative)."""
    attrs = {
        "W": block_matrix([[weight], [weight.scaled(-ONE)]]),
        "b": tuple(bias) + tuple(-v for v in bias),
    }
    labels = [replace(u, rectified=True) for u in units] + [replace(u, sign=-u.sign, rectified=True) for u in units]
    return Layer("relu", attrs, tuple(labels))


def _reading_differences(layer: Layer) -> Layer:
    """``layer`` reading ``v`` as ``relu(v) - relu(-v)`` from a layer held as pairs."""
    width = layer.attrs["W"].cols
    difference = block_matrix([[Matrix.eye(width), Matrix.eye(width, -ONE)]])
    return Layer(layer.kind, {**layer.attrs, "W": layer.attrs["W"] @ difference}, layer.units)


def block_matrix(blocks: Sequence[Sequence[Matrix]]) -> Matrix:
    """The matrix made of ``blocks`` (a list of block rows; the blocks of a row have equal heights,
    those of a column equal widths)."""
    heights = [row[0].rows for row in blocks]
    widths = [m.cols for m in blocks[0]]
    entries: dict[tuple[int, int], Number] = {}
    top = 0
    for row, height in zip(blocks, heights):
        left = 0
        for block, width in zip(row, widths):
            if block.shape != (height, width):
                raise ValueError(f"a {block.rows}x{block.cols} block where a {height}x{width} one belongs")
            entries.update({(top + i, left + j): v for (i, j), v in block.entries.items()})
            left += width
        top += height
    return Matrix(sum(heights), sum(widths), entries)


@dataclass(frozen=True)
class Decoding:
    """How the values of a layered-model layer are read from the units of the target's layer that
    holds them: ``values = matrix @ units + offset``."""

    matrix: Matrix
    offset: tuple[Number, ...]

    @classmethod
    def identity(cls, width: int) -> "Decoding":
        return cls(Matrix.eye(width), (ZERO,) * width)

    def read(self, weight: Matrix, bias: Sequence[Number]) -> tuple[Matrix, tuple[Number, ...]]:
        """The affine map ``weight @ values + bias`` as a map of the units: ``(W D, W e + b)``."""
        shifted = weight.apply(self.offset)
        return weight @ self.matrix, tuple(add(b, s) for b, s in zip(bias, shifted))


def dense(value: Matrix | Sequence[Number]) -> np.ndarray:
    """A float64 copy of a layer attribute: a matrix or a vector."""
    if isinstance(value, Matrix):
        return np.array(value.dense())
    return np.array([float(v) for v in value], dtype=np.float64)


def padded(value: Matrix | Sequence[Number], *shape: int) -> np.ndarray:
    """``dense(value)`` with zeros added to the given shape (unused units of a padded layer)."""
    array = dense(value)
    out = np.zeros(shape)
    out[tuple(slice(0, n) for n in array.shape)] = array
    return out
