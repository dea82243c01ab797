"""Running a layered model by a schedule plan (``ir.schedule.Plan``), exactly or in float64: every
state layer in the form its plan gives (``ir.forms``), every other layer on the reference
interpreter. Run exactly, its outputs are the proof that a plan computes the same rationals as the
model's loops over time (``LayeredModel.run``).

A constant state layer runs stage by stage (``Stage``): each stage's input term adds the previous
values of the earlier stages' units it reads; loop stages take the layer's form, the others (copies,
running sums, rotations, whose parallel code is the targets' own) run as the loop over time that
defines them.
"""

from __future__ import annotations

import numpy as np
from lsrl.ir import forms, heads
from lsrl.ir.graph import Label
from lsrl.ir.layered import Layer, LayeredModel
from lsrl.ir.matrix import Matrix
from lsrl.ir.recurrences import delta, gated, matrix, read, solve
from lsrl.ir.schedule import CHUNK, LOOPS, RECURRENT, SCALED_LOOP, SCAN, LayerPlan, Plan

Array = np.ndarray


def run_plan(model: LayeredModel, plan: Plan, inputs: object, exact: bool = False) -> Array:
    """Outputs ``[batch, time, d_out]``, with the input conventions of ``LayeredModel.run``."""
    planned = {p.layer: p for p in plan.layers}
    x, width = inputs, model.d_in
    for i, layer in enumerate(model.layers):
        previous = model.layers[i - 1] if i else None
        chunked_before = i - 1 in planned and planned[i - 1].form == CHUNK
        if layer.kind == "solve" and chunked_before and heads.solved_states(previous.kind, previous.attrs, layer.attrs):
            x = _solve_layer(layer, width, previous, planned[i - 1].chunk, x, exact)
        elif i not in planned:
            x = _single(layer, width).run(x, exact)
        elif layer.kind == "gated":
            x = _gated_layer(layer, width, planned[i], x, exact)
        elif layer.kind in heads.STATE_HEADS:
            x = _head_layer(layer, width, planned[i], x, exact)
        else:
            x = _state_layer(layer, width, planned[i], x, exact)
        width = layer.width
    return x


def _single(layer: Layer, width: int) -> LayeredModel:
    return LayeredModel(width, [layer], [Label("x", j) for j in range(width)], [Label("y", j) for j in range(layer.width)])


def _affine(layer: Layer, width: int, weight: str, bias: str, x: object, exact: bool) -> Array:
    """``W x + b`` of the layer's weights named ``weight`` and ``bias``, on the interpreter."""
    pre = Layer("affine", {"W": layer.attrs[weight], "b": layer.attrs[bias]}, layer.units)
    return _single(pre, width).run(x, exact)


def _vector(values: tuple, exact: bool) -> Array:
    return np.array(values, dtype=object) if exact else np.array([float(v) for v in values])


def _matrix(matrix: Matrix, exact: bool) -> Array:
    return np.array(matrix.to_rows(), dtype=object).reshape(matrix.shape) if exact else matrix.dense()


def _gated_layer(layer: Layer, width: int, plan: LayerPlan, x: object, exact: bool) -> Array:
    gate = _affine(layer, width, "W2", "b2", x, exact)
    drive = _affine(layer, width, "W", "b", x, exact)
    return _gated_form(plan, gate, drive, _vector(layer.attrs["init"], exact))


def _gated_form(plan: LayerPlan, gate: Array, drive: Array, init: Array) -> Array:
    if plan.form == CHUNK:
        return forms.gated_chunk(gate, drive, init, plan.chunk)
    if plan.form == SCAN:
        return forms.gated_scan(gate, drive, init)
    return gated(np.broadcast_to(gate, drive.shape), drive, init)


def _state_layer(layer: Layer, width: int, plan: LayerPlan, x: object, exact: bool) -> Array:
    u = _affine(layer, width, "W", "b", x, exact)
    transition, init = _matrix(layer.attrs["A"], exact), _vector(layer.attrs["init"], exact)
    h = np.empty_like(u)
    for stage in plan.stages:
        units, reads = list(stage.units), list(stage.reads)
        v = u[..., units]
        if reads:
            previous = np.concatenate([np.broadcast_to(init[reads], h[:, :1, reads].shape), h[:, :-1, reads]], axis=1)
            v = v + previous @ transition[np.ix_(units, reads)].T
        own = transition[np.ix_(units, units)]
        if stage.method not in LOOPS or plan.form == RECURRENT:
            h[..., units] = forms.matrix_recurrent(own, v, init[units])
        elif stage.method == SCALED_LOOP:
            h[..., units] = _gated_form(plan, np.diagonal(own).copy(), v, init[units])
        elif plan.form == CHUNK:
            h[..., units] = forms.matrix_chunk(own, v, init[units], plan.chunk)
        else:
            h[..., units] = forms.matrix_scan(own, v, init[units])
    return h


def _solve_layer(layer: Layer, width: int, previous: Layer, chunk: int, x: Array, exact: bool) -> Array:
    """A solve layer after a chunked matrix layer (whose output ``x`` is): the heads that solve
    one of its heads' states (``heads.solved_states``) by chunks from that head's operands, which
    the matrix layer passes on among its units (``forms.solve_chunk``: Mesa's chunk form), the
    others from the states the matrix layer emitted."""
    pre = _affine(layer, width, "W", "b", x, exact)
    out = pre.copy()
    solved = heads.solved_states(previous.kind, previous.attrs, layer.attrs)
    shift, steps = tuple(layer.attrs.get("shift", ())), layer.attrs["steps"][0]
    for position, head in enumerate(heads.decode("solve", layer.attrs["heads"])):
        query, own_shift = pre[..., head.query:head.query + head.size], tuple(shift[u] for u in head.outputs)
        if not exact:
            own_shift = tuple(float(v) for v in own_shift)
        if position in solved:
            state = solved[position]
            operands = (x[..., state.decay:state.decay + state.decays], x[..., state.key:state.key + state.keys],
                        x[..., state.value:state.value + state.values])
            values = forms.solve_chunk(*operands, query, own_shift, steps, chunk)
        else:
            values = solve(pre[..., head.matrix:head.matrix + head.size ** 2], query, own_shift, steps)
        out[..., head.outputs.start:head.outputs.stop] = values
    return out


def _head_layer(layer: Layer, width: int, plan: LayerPlan, x: object, exact: bool) -> Array:
    """A matrix or delta layer: ``pre = W x + b``, each head's units filled in the plan's form."""
    pre = _affine(layer, width, "W", "b", x, exact)
    out = pre.copy()
    for head in heads.decode(layer.kind, layer.attrs["heads"]):
        key, value = pre[..., head.key:head.key + head.keys], pre[..., head.value:head.value + head.values]
        query = pre[..., head.query:head.query + head.keys] if head.query != heads.NO_QUERY else None
        if isinstance(head, heads.MatrixHead):
            operands = (pre[..., head.decay:head.decay + head.decays], key, value)
            chunked, scanned, recurrent = forms.matrix_head_chunk, forms.matrix_head_scan, matrix
        else:
            operands = (pre[..., head.alpha:head.alpha + 1], pre[..., head.beta:head.beta + 1], key, value)
            chunked, scanned, recurrent = forms.delta_head_chunk, forms.delta_scan, delta
        if plan.form == CHUNK:
            values = chunked(*operands, query, plan.chunk)
        else:
            values = (scanned if plan.form == SCAN else recurrent)(*operands)
            values = values if query is None else read(values, query)
        out[..., head.outputs.start:head.outputs.stop] = values
    return out
