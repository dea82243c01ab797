"""The layered model as an MLIR module, built with the upstream MLIR Python bindings (see
docs/target-mlir.md).

The bindings are the ones ``iree-base-compiler`` ships (``iree.compiler.ir`` and
``iree.compiler.dialects``); every operation, type and attribute is made through them, and the
module is verified before it is printed. It holds three public functions, in one element type
(``f32`` or ``f64``), with the batch and the sequence length dynamic:

- ``forward(x: [batch, time, d_in]) -> [batch, time, d_out]``: every layer over whole sequences;
- ``step(x: [batch, d_in], state...) -> (y: [batch, d_out], state...)``: one token, with one
  ``[batch, width]`` state per state or gated layer (a delta layer's: its heads' states, row by row);
- ``init_state(batch: index) -> state...``: the state before the first token.

Affine, relu, gate and map layers are ``linalg.matmul`` with the weights transposed by its indexing
maps, accumulating onto the broadcast bias, then ``linalg.generic`` for the ReLU, the product or
the float functions.
A state layer ``h_t = A h_{t-1} + u_t`` follows the stages of its schedule plan
(``passes.schedule``), stage by stage:

- a copy is its input term, and delay lines are ``depth`` rounds of ``h = v + N previous(h)``;
- running sums and rotations (``h_t = P h_{t-1} + v_t`` for a permutation ``P``) are a loop over
  time inside one dispatch (``sums``), each step adding the term to the previous value of the
  unit ``P`` brings (a constant table);
- a scaled loop (a constant decay) and a matrix loop are loops over time inside one dispatch
  (``sequence_loop``: an ``scf.for`` per sequence, in a ``flow.dispatch.region``).

A gated layer ``h_t = a_t * h_{t-1} + v_t`` computes ``a`` and ``v`` for every step, then the
recurrence in one dispatch, as a scaled loop does (``gated_recurrence``).
Map layers compute their float functions with ``math`` ops (``backends/mlir_functions.py``); delta
and solve layers compute ``W x + b`` and put what their heads emit in the heads' units
(``backends/mlir_heads.py``). Matrix states reach the target expanded into gated layers (its
``layer_kinds`` leave ``matrix`` out). The recurrences are in ``backends/mlir_states.py``, the
operations on tensors in ``backends/mlir_ops.py``.

Every sum is a sum of the layered model's terms, in some order, and nothing else: the rounding
analysis (``backends/rounding.py``) bounds exactly this arithmetic. Terms a stage adds that the
layered model does not have are exact zeros: a stage reads whole earlier parts through columns of
``A`` that are zero except where it reads them.

The weights are constants (``dense_resource`` blobs named after the safetensors names, with
suffixes for the rows of one stage), not function arguments: see docs/target-mlir.md for why.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from lsrl.backends.mlir_functions import FunctionOps
from lsrl.backends.mlir_heads import HeadOps
from lsrl.backends.mlir_spec import STATE_KINDS, ModelSpec
from lsrl.backends.mlir_states import StateOps
from lsrl.ir.schedule import (
    COPY,
    MATRIX_LOOP,
    ROTATION,
    RUNNING_SUM,
    SCALED_LOOP,
    Stage,
    join_order,
)

UNIT_MULTIPLE = 8  # every layer but the last padded to a multiple of this many units
ELEMENT_TYPES = {"float32": "f32", "float64": "f64"}
def build_module(spec: ModelSpec, dtype: str):
    """The verified module (an ``ir.Module``, which keeps its own ``ir.Context`` alive)."""
    from iree.compiler import ir

    context = ir.Context()
    with context, ir.Location.unknown():
        module = ir.Module.create()
        _Builder(spec, dtype, module).build()
        if not module.operation.verify():  # raises with the verifier's diagnostics where it fails
            raise AssertionError("the MLIR verifier refused the module")
    return module


def module_text(module) -> str:
    """The module's text: SSA values named after the layer and stage they compute."""
    return module.operation.get_asm(use_name_loc_as_prefix=True, assume_verified=True)


class _Builder(StateOps, FunctionOps, HeadOps):
    """Builds the three functions into ``module`` (inside its context and a location)."""

    def __init__(self, spec: ModelSpec, dtype: str, module):
        super().__init__(dtype)
        self.spec, self.module = spec.padded(UNIT_MULTIPLE), module
        # without the padding: what the functions read and write (the input, the states of step)
        self.d_in, self.widths = spec.d_in, [width for _, width in spec.layers]
        self.state_widths = {i: spec.state_width(i) for i in spec.state_layers}

    # --- functions ---------------------------------------------------------------------------------
    def build(self) -> None:
        spec = self.spec
        d_out = spec.layers[-1][1]
        states = [self.type([None, self.state_widths[i]]) for i in spec.state_layers]
        with self.ir.InsertionPoint(self.module.body):
            self.function("forward", [self.type([None, None, self.d_in])], [self.type([None, None, d_out])], self.forward)
            self.function("step", [self.type([None, self.d_in]), *states], [self.type([None, d_out]), *states], self.step)
            self.function("init_state", [self.index], states, self.init_state)

    def function(self, name: str, inputs: list, results: list, body: Callable) -> None:
        function = self.func.FuncOp(name, (inputs, results), visibility="public")
        with self.ir.InsertionPoint(function.add_entry_block()):
            self.func.ReturnOp(body(*function.arguments))

    def forward(self, x):
        self.batch, self.time = self.dim(x, 0), self.dim(x, 1)
        h = self.collapse(self.pad(x, 2, self.spec.d_in - self.d_in), [[0, 1], [2]])
        self.rows = self.dim(h, 0)  # (IREE then sees one size for every layer, as in step)
        for i, (kind, width) in enumerate(self.spec.layers):
            if kind == "state":
                h = self.collapse(self.state_forward(i, h, width), [[0, 1], [2]], name=f"layer{i}")
            elif kind == "gated":
                h = self.collapse(self.gated_forward(i, h, width), [[0, 1], [2]], name=f"layer{i}")
            elif kind == "delta":
                h = self.collapse(self.delta_layer_forward(i, h, width), [[0, 1], [2]], name=f"layer{i}")
            else:
                h = self.stateless(i, kind, h, width)
        return [self.expand(h, [[0, 1], [2]], [self.batch, self.time, self.spec.layers[-1][1]], name="y")]

    def step(self, x, *states):
        """One token; the states are the layers' own units, without the padding (always zero)."""
        self.batch = self.rows = self.dim(x, 0)
        x = self.pad(x, 1, self.spec.d_in - self.d_in)
        new_states = []
        for i, (kind, width) in enumerate(self.spec.layers):
            if kind == "delta":
                x = self.delta_layer_step(i, x, states[len(new_states)], new_states)
            elif kind in STATE_KINDS:
                previous = self.pad(states[len(new_states)], 1, width - self.widths[i])
                drive = self.linear(x, self.weight(i, "W"), self.weight(i, "b"))
                if kind == "state":
                    x = self.matmul(previous, self.weight(i, "A"), drive, name=f"layer{i}")
                else:
                    gate = self.linear(x, self.weight(i, "W2"), self.weight(i, "b2"))
                    x = self.gated_step(previous, gate, drive, name=f"layer{i}")
                new_states.append(self.slice(x, [0, 0], [self.batch, self.widths[i]]))
            else:
                x = self.stateless(i, kind, x, width)
        return [x, *new_states]

    def init_state(self, batch):
        """The states before the first token: a state or gated layer's ``init``, delta heads' zeros."""
        zero = self.arith.constant(self.element, 0.0)
        return [self.linalg.fill(zero, outs=[self.tensor.empty([batch, self.state_widths[i]], self.element)])
                if self.spec.layers[i][0] == "delta" else
                self.broadcast_rows(self.weight(i, "init", list(range(self.widths[i])), "unpadded"), [batch], name=f"layer{i}.init")
                for i in self.spec.state_layers]

    # --- layers --------------------------------------------------------------------------------------
    def stateless(self, i: int, kind: str, x, width: int):
        """An affine, relu, gate, map or solve layer on ``x`` (``[rows, d_in]``)."""
        first = self.linear(x, self.weight(i, "W"), self.weight(i, "b"))
        if kind == "affine":
            return first
        if kind == "map":
            return self.map_layer(first, self.spec.attributes[i]["functions"], f"layer{i}")
        if kind == "solve":
            shift, steps = self.weight(i, "shift"), self.spec.attributes[i]["steps"][0]
            for k, head in enumerate(self.spec.heads(i)):
                solution = self.solve_head(first, head, shift, steps, f"layer{i}.head{k}")
                first = self.insert(solution, first, [0, head.out], [self.rows, head.size])
            return first
        if kind == "relu":
            zero = self.arith.constant(self.element, 0.0)
            return self.elementwise([first], lambda v: self.arith.maximumf(v, zero), [self.rows, width], f"layer{i}")
        second = self.linear(x, self.weight(i, "W2"), self.weight(i, "b2"))
        return self.elementwise([first, second], self.arith.mulf, [self.rows, width], f"layer{i}")

    def state_forward(self, i: int, x, width: int):
        """A state layer over whole sequences (``x``: ``[rows, d_in]``). A layer of copies, running
        sums and rotations that read no other stage (every state layer of the shared table) is
        computed whole (``sums``); any other, stage by stage."""
        stages = self.spec.plans[i]
        if all(stage.method in (COPY, RUNNING_SUM, ROTATION) and not stage.depth and not stage.reads for stage in stages):
            drive = self.linear(x, self.weight(i, "W"), self.weight(i, "b"))
            v = self.expand(drive, [[0, 1], [2]], [self.batch, self.time, width], name=f"layer{i}.v")
            copies = {unit for stage in stages if stage.method == COPY for unit in stage.units}
            cycles = [[stage.units[p] for p in cycle] for stage in stages for cycle in stage.cycles]
            return v if len(copies) == width else self.sums(v, cycles, copies, self.spec.tensors[f"layers.{i}.init"], f"layers.{i}.init")
        return self.stage_by_stage(i, x, width, stages)

    def gated_forward(self, i: int, x, width: int):
        """A gated layer ``h_t = a_t * h_{t-1} + v_t`` over whole sequences: both terms for every
        step first, then the recurrence (``gated_recurrence``)."""
        sizes = [self.batch, self.time, width]
        v = self.expand(self.linear(x, self.weight(i, "W"), self.weight(i, "b")), [[0, 1], [2]], sizes, name=f"layer{i}.v")
        a = self.expand(self.linear(x, self.weight(i, "W2"), self.weight(i, "b2")), [[0, 1], [2]], sizes, name=f"layer{i}.a")

        return self.gated_recurrence(v, a, self.weight(i, "init"), f"layer{i}.h")

    def delta_layer_forward(self, i: int, x, width: int):
        """A delta layer over whole sequences: its units ``W x + b``, with what each head emits in
        the head's units (``[batch, time, width]``)."""
        u = self.expand(self.linear(x, self.weight(i, "W"), self.weight(i, "b")), [[0, 1], [2]],
                        [self.batch, self.time, width], name=f"layer{i}.u")
        out = u
        for k, head in enumerate(self.spec.heads(i)):
            emitted = self.delta_forward(u, head, f"layer{i}.head{k}")
            out = self.insert(emitted, out, [0, 0, head.out], [self.batch, self.time, len(head.outputs)])
        return out

    def delta_layer_step(self, i: int, x, state, new_states: list):
        """One token of a delta layer: its output, its heads' new states appended to ``new_states``."""
        u = self.linear(x, self.weight(i, "W"), self.weight(i, "b"))
        out, parts, start = u, [], 0
        for k, head in enumerate(self.spec.heads(i)):
            size = head.keys * head.values
            emitted, part = self.delta_step(u, self.slice(state, [0, start], [self.batch, size]), head, f"layer{i}.head{k}")
            out = self.insert(emitted, out, [0, head.out], [self.batch, len(head.outputs)])
            parts.append(part)
            start += size
        new_states.append(self.concat(parts, 1, [self.batch, start]))
        return out

    def stage_by_stage(self, i: int, x, width: int, stages: list[Stage]):
        """The layer's stages in the plan's order, each reading the earlier ones it needs. The input
        terms of every unit are one product, its rows in the order the stages' parts are joined
        in, so that each stage's are a slice of columns."""
        ordered, positions = join_order(stages)
        order = [unit for k in ordered for unit in stages[k].units]
        start = dict(zip(ordered, np.cumsum([0] + [len(stages[k].units) for k in ordered])))
        drives = self.linear(x, self.weight(i, "W", order), self.weight(i, "b", order))
        parts, part_of = {}, {}
        for k, stage in enumerate(stages):
            units = list(stage.units)
            name = f"layer{i}.part{k}"
            drive = self.slice(drives, [0, int(start[k])], [self.rows, len(units)])
            if stage.reads:  # v_t = u_t + A h_{t-1} on whole earlier parts (zero but where it reads)
                read = sorted({part_of[unit] for unit in stage.reads})
                earlier_units = [unit for j in read for unit in stages[j].units]
                earlier = self.concat([parts[j] for j in read], 2, [self.batch, self.time, len(earlier_units)])
                previous = self.previous(earlier, self.weight(i, "init", earlier_units, f"part{k}.reads"))
                transition = self.constant(f"layers.{i}.A.part{k}.reads", self.spec.tensors[f"layers.{i}.A"][np.ix_(units, earlier_units)])
                drive = self.matmul(self.collapse(previous, [[0, 1], [2]]), transition, drive)
            v = self.expand(drive, [[0, 1], [2]], [self.batch, self.time, len(units)], name=f"{name}.v")
            parts[k] = self.stage_value(stage, v, i, k, name)
            part_of.update((unit, k) for unit in units)
        joined = self.concat([parts[k] for k in ordered], 2, [self.batch, self.time, width])
        return joined if positions is None else self.permute_units(joined, positions, width)

    def stage_value(self, stage: Stage, v, i: int, k: int, name: str):
        """A stage's units at every step (``[batch, time, units]``) from their input term ``v``."""
        units = list(stage.units)
        own = self.spec.tensors[f"layers.{i}.A"][np.ix_(units, units)]
        if stage.method == COPY and stage.depth == 0:
            return v
        init = self.weight(i, "init", units, f"part{k}")
        if stage.method == COPY:
            return self.delay_lines(v, self.constant(f"layers.{i}.A.part{k}", own), init, stage.depth, name)
        if stage.method in (RUNNING_SUM, ROTATION):
            start = self.spec.tensors[f"layers.{i}.init"][units]
            return self.sums(v, stage.cycles, set(), start, f"layers.{i}.init.part{k}", name)
        if stage.method == SCALED_LOOP:
            decay = self.constant(f"layers.{i}.A.part{k}.diagonal", np.diagonal(own).copy())
            return self.gated_recurrence(v, decay, init, name)
        if stage.method == MATRIX_LOOP:
            transition = self.constant(f"layers.{i}.A.part{k}", own)
            return self.matrix_recurrence(v, transition, init, name)
        raise AssertionError(stage.method)

    def weight(self, i: int, name: str, rows: list[int] | None = None, suffix: str = "reordered"):
        """Layer ``i``'s weight ``name``, or its ``rows`` in that order (named with ``suffix``)."""
        array = self.spec.tensors[f"layers.{i}.{name}"]
        if rows is None or rows == list(range(len(array))):
            return self.constant(f"layers.{i}.{name}", array)
        return self.constant(f"layers.{i}.{name}.{suffix}", array[rows])
