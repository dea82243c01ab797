"""Composition of two layered models (docs/growth.md): ``parallel`` (one model computing both
outputs of two models that read the same input) and ``sequential`` (the second reads the first's
outputs).

A layer holds one kind, so parallel composition first gives both models the same sequence of
layer kinds: the shortest sequence containing both models' sequences, each model filled in with
identity layers (``passes.growth.insert_identity``) where it lacks a layer. Then each pair of
layers becomes one layer whose weights are block-diagonal (the first layer's stacked: both read
the input); the zero blocks are the constraint: neither model reads the other's units.
"""

from __future__ import annotations

import numpy as np
from lsrl.ir import heads
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import DEFAULT_INITIALIZER, Initializer
from lsrl.ir.layered import Layer, LayeredModel
from lsrl.ir.matrix import Matrix
from lsrl.passes.growth import insert_identity


def sequential(first: LayeredModel, second: LayeredModel) -> LayeredModel:
    """``second`` reading ``first``'s outputs: the layers of both, in order."""
    if first.d_out != second.d_in:
        raise LsrlError(f"sequential composition: the first model has {first.d_out} outputs, "
                        f"the second reads {second.d_in} inputs")
    return LayeredModel(first.d_in, first.layers + second.layers, first.input_labels, second.output_labels)


def parallel(first: LayeredModel, second: LayeredModel, seed: int = 0,
             init: Initializer = DEFAULT_INITIALIZER) -> LayeredModel:
    """One model whose outputs are ``first``'s then ``second``'s, on the input both read."""
    if first.d_in != second.d_in:
        raise LsrlError(f"parallel composition: the models read {first.d_in} and {second.d_in} inputs")
    for model in (first, second):
        kinds = {layer.kind for layer in model.layers} & set(heads.HEAD_OF_KIND)
        if kinds:
            raise LsrlError(f"parallel composition of {' and '.join(sorted(kinds))} layers is not supported")
    rng = np.random.default_rng(seed)
    first, second = _aligned(first, second, rng, init)
    layers = [_merged(a, b, stacked=i == 0) for i, (a, b) in enumerate(zip(first.layers, second.layers))]
    return LayeredModel(first.d_in, layers, first.input_labels, first.output_labels + second.output_labels)


def _aligned(first: LayeredModel, second: LayeredModel, rng: np.random.Generator,
             init: Initializer) -> tuple[LayeredModel, LayeredModel]:
    """Both models with identity layers inserted so that their layer kinds are the same sequence."""
    if first.layers[-1].kind != second.layers[-1].kind:  # an affine identity can follow any output
        first = insert_identity(first, len(first.layers), "affine", rng, init)
        second = insert_identity(second, len(second.layers), "affine", rng, init)
    # the output layers pair up: nothing is inserted after them (a ReLU there could need pairs)
    plan = _supersequence([l.kind for l in first.layers[:-1]], [l.kind for l in second.layers[:-1]])
    for position, (kind, in_first, in_second) in enumerate(plan):
        if not in_first:
            first = insert_identity(first, position, kind, rng, init)
        if not in_second:
            second = insert_identity(second, position, kind, rng, init)
    return first, second


def _supersequence(a: list[str], b: list[str]) -> list[tuple[str, bool, bool]]:
    """A shortest common supersequence of ``a`` and ``b``: (kind, from a, from b) per entry."""
    length = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]  # length[i][j]: of a[i:] and b[j:]
    for i in range(len(a), -1, -1):
        for j in range(len(b), -1, -1):
            if i == len(a) or j == len(b):
                length[i][j] = len(a) - i + len(b) - j
            elif a[i] == b[j]:
                length[i][j] = 1 + length[i + 1][j + 1]
            else:
                length[i][j] = 1 + min(length[i + 1][j], length[i][j + 1])
    plan, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if i < len(a) and j < len(b) and a[i] == b[j]:
            plan.append((a[i], True, True))
            i, j = i + 1, j + 1
        elif j == len(b) or (i < len(a) and length[i + 1][j] <= length[i][j + 1]):
            plan.append((a[i], True, False))
            i += 1
        else:
            plan.append((b[j], False, True))
            j += 1
    return plan


def _merged(a: Layer, b: Layer, stacked: bool) -> Layer:
    attrs = {}
    for name, value in a.attrs.items():
        other = b.attrs[name]
        if isinstance(value, Matrix):
            attrs[name] = _stacked(value, other) if stacked and name != "A" else _block_diagonal(value, other)
        else:
            attrs[name] = value + other  # vectors and per-unit functions: one entry per unit
    return Layer(a.kind, attrs, a.units + b.units)


def _stacked(top: Matrix, bottom: Matrix) -> Matrix:
    shifted = {(i + top.rows, j): v for (i, j), v in bottom.entries.items()}
    return Matrix(top.rows + bottom.rows, top.cols, {**top.entries, **shifted})


def _block_diagonal(top: Matrix, bottom: Matrix) -> Matrix:
    shifted = {(i + top.rows, j + top.cols): v for (i, j), v in bottom.entries.items()}
    return Matrix(top.rows + bottom.rows, top.cols + bottom.cols, {**top.entries, **shifted})
