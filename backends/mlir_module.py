"""The layered model as an MLIR module, built with the upstream MLIR Python bindings (see
docs/target-mlir.md).

The bindings are the ones ``iree-base-compiler`` ships (``iree.compiler.ir`` and
``iree.compiler.dialects``); every operation, type and attribute is made through them, and the
module is verified before it is printed. It holds three public functions, in one element type
(``f32`` or ``f64``), with the batch and the sequence length dynamic:

- ``forward(x: [batch, time, d_in]) -> [batch, time, d_out]``: every layer over whole sequences;
- ``step(x: [batch, d_in], state...) -> (y: [batch, d_out], state...)``: one token, with one
  ``[batch, width]`` state per state layer;
- ``init_state(batch: index) -> state...``: the state before the first token.

Affine, relu and gate layers are ``linalg.matmul`` with the weights transposed by its indexing
maps, accumulating onto the broadcast bias, then ``linalg.generic`` for the ReLU or the product.
A state layer ``h_t = A h_{t-1} + u_t`` follows the plan of ``backends/codegen.py``
(``plan_state_layer``), stage by stage:

- a copy is its input term, and delay lines are ``depth`` rounds of ``h = v + N previous(h)``;
- a running sum is a cumulative sum over time, as a blocked scan without a loop: sums within
  blocks of ``SCAN_BLOCK`` steps, then the sums of the blocks before each block (a reduction over
  the blocks, so its work grows with ``(time / SCAN_BLOCK)^2``: a few percent of the model's at
  4096 steps);
- a rotation is a running sum in the frame that turns with its permutation, between two gathers
  whose indices are computed from the step (``linalg.index``) and constant tables;
- a scaled loop or a matrix loop is an ``scf.for`` over time carrying the state and the outputs.

Every sum is a sum of the layered model's terms, in some order, and nothing else: the rounding
analysis (``backends/rounding.py``) bounds exactly this arithmetic. Terms a stage adds that the
layered model does not have are exact zeros: the scans add ``0`` for the steps outside a block's
prefix, and a stage reads whole earlier parts through columns of ``A`` that are zero except where
it reads them.

The weights are constants (``dense_resource`` blobs named after the safetensors names, with
suffixes for the rows of one stage), not function arguments: see docs/target-mlir.md for why.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from lsrl.backends.codegen import (
    COPY,
    MATRIX_LOOP,
    ROTATION,
    RUNNING_SUM,
    SCALED_LOOP,
    Stage,
    join_order,
    plan_state_layer,
)
from lsrl.ir.layered import LAYER_KINDS, LayeredModel

SCAN_BLOCK = 32  # steps summed within one block by a running sum's scan
SCAN_LEVELS = 2  # blocks of blocks before the sums over every earlier block
UNIT_MULTIPLE = 8  # every layer but the last padded to a multiple of this many units
ELEMENT_TYPES = {"float32": "f32", "float64": "f64"}
NUMPY_DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class ModelSpec:
    """What the module is built from: the layers' kinds and widths, the float64 weights
    ``layers.{i}.{W,b,...}`` and each state layer's plan. It comes from a layered model, or from a
    compiled model's config and weights (to build the module for the other dtype)."""

    d_in: int
    layers: tuple[tuple[str, int], ...]  # (kind, width)
    tensors: dict[str, np.ndarray]
    plans: dict[int, list[Stage]]

    @classmethod
    def of_model(cls, model: LayeredModel) -> "ModelSpec":
        plans = {i: plan_state_layer(layer.attrs["A"]) for i, layer in enumerate(model.layers) if layer.kind == "state"}
        return cls(model.d_in, tuple((layer.kind, layer.width) for layer in model.layers), model.tensors(), plans)

    @classmethod
    def of_config(cls, config: dict, tensors: dict[str, np.ndarray]) -> "ModelSpec":
        layers = tuple((layer["kind"], layer["width"]) for layer in config["layers"])
        plans = {int(i): [Stage.from_json(stage) for stage in plan] for i, plan in config["state_plans"].items()}
        return cls(config["d_in"], layers, tensors, plans)

    @property
    def state_layers(self) -> list[int]:
        return [i for i, (kind, _) in enumerate(self.layers) if kind == "state"]

    def padded(self, multiple: int) -> "ModelSpec":
        """The model with its input and every layer but the last widened to a multiple of
        ``multiple`` units, by units whose weights and initial values are zero: they hold 0 at
        every step (a state layer's are one more stage, a copy of their zero input term; the
        input's are zeros the functions add), and the layers that read them add only exact zeros."""
        widths = [-(-width // multiple) * multiple for width in [self.d_in, *(width for _, width in self.layers[:-1])]]
        widths.append(self.layers[-1][1])
        tensors, plans = {}, {}
        for i, (kind, width) in enumerate(self.layers):
            rows, cols = widths[i + 1], widths[i]
            for name in LAYER_KINDS[kind]:
                weight = self.tensors[f"layers.{i}.{name}"]
                shape = (rows, rows) if name == "A" else (rows, cols) if weight.ndim == 2 else (rows,)
                tensors[f"layers.{i}.{name}"] = np.pad(weight, [(0, full - size) for full, size in zip(shape, weight.shape)])
            if kind == "state":
                extra = tuple(range(width, rows))
                plans[i] = self.plans[i] + ([Stage(COPY, extra)] if extra else [])
        layers = tuple((kind, widths[i + 1]) for i, (kind, _) in enumerate(self.layers))
        return ModelSpec(widths[0], layers, tensors, plans)


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


class _Builder:
    """Builds the three functions into ``module`` (inside its context and a location)."""

    def __init__(self, spec: ModelSpec, dtype: str, module):
        from iree.compiler import ir
        from iree.compiler.dialects import arith, func, linalg, scf, tensor

        self.ir, self.arith, self.func, self.linalg, self.scf, self.tensor = ir, arith, func, linalg, scf, tensor
        self.spec, self.dtype, self.module = spec.padded(UNIT_MULTIPLE), dtype, module
        # without the padding: what the functions read and write (the input, the states of step)
        self.d_in, self.widths = spec.d_in, [width for _, width in spec.layers]
        self.element = ir.F32Type.get() if dtype == "float32" else ir.F64Type.get()
        self.index = ir.IndexType.get()
        self.dynamic = ir.ShapedType.get_dynamic_size()
        self.batch = self.time = self.rows = None  # the dynamic sizes of the function being built
        self.resources: dict[str, tuple] = {}  # weight name -> (array, its dense_resource attribute)

    # --- functions ---------------------------------------------------------------------------------
    def build(self) -> None:
        spec = self.spec
        d_out = spec.layers[-1][1]
        states = [self.type([None, self.widths[i]]) for i in spec.state_layers]
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
            else:
                h = self.stateless(i, kind, h, width)
        return [self.expand(h, [[0, 1], [2]], [self.batch, self.time, self.spec.layers[-1][1]], name="y")]

    def step(self, x, *states):
        """One token; the states are the layers' own units, without the padding (always zero)."""
        self.batch = self.rows = self.dim(x, 0)
        x = self.pad(x, 1, self.spec.d_in - self.d_in)
        new_states = []
        for i, (kind, width) in enumerate(self.spec.layers):
            if kind == "state":
                previous = self.pad(states[len(new_states)], 1, width - self.widths[i])
                drive = self.linear(x, self.weight(i, "W"), self.weight(i, "b"))
                x = self.matmul(previous, self.weight(i, "A"), drive, name=f"layer{i}")
                new_states.append(self.slice(x, [0, 0], [self.batch, self.widths[i]]))
            else:
                x = self.stateless(i, kind, x, width)
        return [x, *new_states]

    def init_state(self, batch):
        return [self.broadcast_rows(self.weight(i, "init", list(range(self.widths[i])), "unpadded"), [batch], name=f"layer{i}.init")
                for i in self.spec.state_layers]

    # --- layers --------------------------------------------------------------------------------------
    def stateless(self, i: int, kind: str, x, width: int):
        """An affine, relu or gate layer on ``x`` (``[rows, d_in]``)."""
        first = self.linear(x, self.weight(i, "W"), self.weight(i, "b"))
        if kind == "affine":
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
            return self.loop(v, self.constant(f"layers.{i}.A.part{k}.diagonal", np.diagonal(own).copy()), init, name)
        if stage.method == MATRIX_LOOP:
            return self.loop(v, self.constant(f"layers.{i}.A.part{k}", own), init, name)
        raise AssertionError(stage.method)

    # --- the methods of the plan ---------------------------------------------------------------------
    def previous(self, h, init):
        """``h`` one step back in time: ``init`` at the first step, then ``h[:, t - 1]``."""
        arith, zero = self.arith, self.constant_index(0)

        def body(start):
            b, t, i = (self.loop_index(d) for d in range(3))
            first = arith.cmpi(arith.CmpIPredicate.eq, t, zero)
            earlier = self.tensor.extract(h, [b, arith.select(first, zero, arith.subi(t, self.constant_index(1))), i])
            return arith.select(first, start, earlier)

        return self.generic([(init, [2])], [self.batch, self.time, self.width(h)], ["parallel"] * 3, body)

    def delay_lines(self, v, links, init, depth: int, name: str):
        """``h_t = N h_{t-1} + v_t`` for a ``N`` of chains at most ``depth`` long and no cycle: each
        round of ``h = v + N previous(h)`` makes one more link exact."""
        flat_v = self.collapse(v, [[0, 1], [2]])
        h = v
        for _ in range(depth):
            flat = self.matmul(self.collapse(self.previous(h, init), [[0, 1], [2]]), links, flat_v)
            h = self.expand(flat, [[0, 1], [2]], [self.batch, self.time, self.width(v)], name=name)
        return h

    def sums(self, v, cycles: Sequence[Sequence[int]], copies: set[int], init: np.ndarray, init_name: str,
             name: str | None = None):
        """For every unit ``j`` of ``v`` (``[batch, time, units]``): ``h_t = v_t`` where ``j`` is in
        ``copies``, else ``h_t = P h_{t-1} + v_t`` from ``init``, for the permutation ``P`` of
        ``cycles`` (``cycle[k]`` takes the previous value of ``cycle[k + 1]``; a unit in no cycle
        takes its own: a running sum).

        Read in the frame that turns with ``P`` (unit ``j`` at step ``t`` relabelled by ``P^-t``),
        ``h`` only adds up ``v``: ``h_t = P^t (P init + sum of P^-s v_s over s <= t)``. So one gather
        moves ``v`` into that frame (with time last, for the scan), ``prefix_sums`` adds it up, and
        the output gathers back, adding the start; exact apart from the sums, since ``P`` only
        moves values. Copies are summed too, and their sums left unread."""
        arith, tensor, width = self.arith, self.tensor, self.width(v)
        members, start, position, length = [], [0] * width, [0] * width, [0] * width
        successor = list(range(width))
        for cycle in [*cycles, *([unit] for unit in range(width) if all(unit not in c for c in cycles))]:
            for p, unit in enumerate(cycle):
                start[unit], position[unit], length[unit] = len(members), p, len(cycle)
                successor[unit] = cycle[(p + 1) % len(cycle)]
            members.extend(cycle)
        member_table = self.index_table(members)
        tables = [(self.index_table(values), [2]) for values in (start, position, length)]

        def moved(t, first, place, size, behind: bool):
            """The unit that ``P^-t`` (``behind``) or ``P^t`` brings to the unit of these table entries."""
            first, place, size = (self.as_index(entry) for entry in (first, place, size))
            turned = arith.remui(t, size)
            offset = arith.remui(arith.addi(place, arith.subi(size, turned) if behind else turned), size)
            return self.as_index(tensor.extract(member_table, [arith.addi(first, offset)]))

        # turned[b, j, t] = v[b, t, P^-t j]: loops (b, t, j), the result written at (b, j, t)
        turned = self.generic(tables, [self.batch, width, self.time], ["parallel"] * 3,
                              lambda *entries: tensor.extract(v, [self.loop_index(0), self.loop_index(1),
                                                                   moved(self.loop_index(1), *entries, behind=True)]),
                              result_dims=[0, 2, 1])
        rows = arith.muli(self.batch, self.constant_index(width))
        summed = self.expand(self.prefix_sums(self.collapse(turned, [[0, 1], [2]]), rows, self.time, SCAN_LEVELS),
                             [[0, 1], [2]], [self.batch, width, self.time])
        start_turned = self.constant(f"{init_name}.turned", init[successor])
        copy_mask = self.index_table([int(unit in copies) for unit in range(width)])

        def body(*entries):
            b, t, j = (self.loop_index(d) for d in range(3))
            *entries, copy = entries
            unit = moved(t, *entries, behind=False)
            total = arith.addf(tensor.extract(start_turned, [unit]), tensor.extract(summed, [b, unit, t]))
            is_copy = arith.cmpi(arith.CmpIPredicate.ne, copy, arith.constant(self.ir.IntegerType.get_signless(32), 0))
            return arith.select(is_copy, tensor.extract(v, [b, t, j]), total)

        return self.generic([*tables, (copy_mask, [2])], [self.batch, self.time, width], ["parallel"] * 3, body, name=name)

    def prefix_sums(self, x, rows, length, levels: int):
        """``out[r, t] = sum of x[r, s] over s <= t`` for ``x`` ``[rows, length]``, as a blocked scan:
        the sums within blocks of ``SCAN_BLOCK`` (a product with a lower-triangular matrix of ones:
        the terms and zeros, added exactly as in the recurrence, in another order), plus the sums of
        the blocks before, which are prefix sums of the blocks' totals (``levels`` more times, then
        a masked sum over every earlier block)."""
        arith, block = self.arith, SCAN_BLOCK
        if levels == 0:
            return self.reduction(x, [0, 2], [rows, length], 3, [0, 1], self.counted(2, 1, "ule"))
        blocks = arith.ceildivui(length, self.constant_index(block))
        padded = self.pad(x, 1, arith.subi(arith.muli(blocks, self.constant_index(block)), length))
        block_rows = arith.muli(rows, blocks)
        grid = self.collapse(self.expand(padded, [[0], [1, 2]], [rows, blocks, block]), [[0, 1], [2]])
        zero = self.linalg.fill(arith.constant(self.element, 0.0), outs=[self.tensor.empty([block_rows, block], self.element)])
        within = self.matmul(grid, self.constant("scan.lower_triangle", np.tril(np.ones((block, block)))), zero)
        totals = self.expand(self.slice(within, [0, block - 1], [block_rows, 1], drop=[1]), [[0, 1]], [rows, blocks])
        through = self.prefix_sums(totals, rows, blocks, levels - 1)
        one = self.constant_index(1)

        def add_blocks_before(part):  # through[r, n - 1]: the sum of the blocks before block n
            r, n = self.loop_index(0), self.loop_index(1)
            first = arith.cmpi(arith.CmpIPredicate.eq, n, self.constant_index(0))
            before = self.tensor.extract(through, [r, arith.subi(arith.maxui(n, one), one)])
            return arith.select(first, part, arith.addf(before, part))

        sums = self.generic([(self.expand(within, [[0, 1], [2]], [rows, blocks, block]), [0, 1, 2])],
                            [rows, blocks, block], ["parallel"] * 3, add_blocks_before)
        return self.slice(self.collapse(sums, [[0], [1, 2]]), [0, 0], [rows, length])

    def counted(self, term: int, place: int, predicate: str) -> Callable:
        """The body of a masked prefix sum: add the term where ``index(term) <predicate> index(place)``."""
        arith = self.arith

        def body(value, accumulated):
            kept = arith.cmpi(getattr(arith.CmpIPredicate, predicate), self.loop_index(term), self.loop_index(place))
            return arith.select(kept, arith.addf(accumulated, value), accumulated)

        return body

    def loop(self, v, transition, init, name: str):
        """``h_t = A h_{t-1} + v_t`` by an ``scf.for`` over time: elementwise for a diagonal
        ``transition`` (a vector), else a matrix product.

        The loop carries only the outputs, starting empty; each step reads ``h_{t-1}`` back from
        them (``init`` at the first step). IREE 3.13 starts a loop-carried tensor from the wrong
        offset where it shares an allocation with other tensors, which a carried ``h`` did."""
        arith, scf, width = self.arith, self.scf, self.width(v)
        zero, one = self.constant_index(0), self.constant_index(1)
        with self.named(name):
            loop = scf.ForOp(zero, self.time, one, [self.tensor.empty([self.batch, self.time, width], self.element)])
        with self.ir.InsertionPoint(loop.body):
            t, (written,) = loop.induction_variable, loop.inner_iter_args
            first = arith.cmpi(arith.CmpIPredicate.eq, t, zero)
            back = arith.select(first, zero, arith.subi(t, one))
            stored = self.slice(written, [0, back, 0], [self.batch, 1, width], drop=[1])
            h = self.generic([(stored, [0, 1]), (init, [1])], [self.batch, width], ["parallel"] * 2,
                             lambda h_i, start: arith.select(first, start, h_i))
            v_t = self.slice(v, [0, t, 0], [self.batch, 1, width], drop=[1])
            if self.ir.RankedTensorType(transition.type).rank == 1:
                h = self.generic([(h, [0, 1]), (transition, [1]), (v_t, [0, 1])], [self.batch, width],
                                 ["parallel"] * 2, lambda h_i, a, v_i: arith.addf(arith.mulf(a, h_i), v_i))
            else:
                h = self.matmul(h, transition, v_t)
            scf.YieldOp([self.insert(h, written, [0, t, 0], [self.batch, 1, width])])
        return loop.results[0]

    # --- linear algebra --------------------------------------------------------------------------------
    def linear(self, x, weight, bias):
        """``x W^T + b`` (``x``: ``[rows, d_in]``): the product accumulated onto the bias."""
        return self.matmul(x, weight, self.broadcast_rows(bias, [self.rows]))

    def matmul(self, x, weight, onto, name: str | None = None):
        """``onto + x W^T`` for ``x`` ``[rows, k]`` and ``W`` ``[width, k]`` (transposed by the maps)."""
        ir = self.ir
        d = ir.AffineDimExpr.get
        maps = [ir.AffineMap.get(3, 0, [d(0), d(2)]), ir.AffineMap.get(3, 0, [d(1), d(2)]),
                ir.AffineMap.get(3, 0, [d(0), d(1)])]
        with self.named(name):
            return self.linalg.matmul(x, weight, outs=[onto], indexing_maps=maps)

    def elementwise(self, operands: list, body: Callable, sizes: list, name: str):
        return self.generic([(v, list(range(len(sizes)))) for v in operands], sizes, ["parallel"] * len(sizes), body, name=name)

    def reduction(self, source, source_dims: list[int], sizes: list, loops: int, result_dims: list[int], body: Callable):
        """A sum over the loop dimensions not in ``result_dims`` (zero to start), ``body(term, sum)``."""
        zero = self.linalg.fill(self.arith.constant(self.element, 0.0), outs=[self.tensor.empty(sizes, self.element)])
        iterators = ["parallel" if d in result_dims else "reduction" for d in range(loops)]
        return self.generic([(source, source_dims)], sizes, iterators, body, result_dims, start=zero)

    def generic(self, operands: list, sizes: list, iterators: list[str], body: Callable, result_dims: list[int] | None = None,
                start=None, name: str | None = None):
        """A ``linalg.generic`` over ``len(iterators)`` loops: ``operands`` are ``(value, dims)``, read
        at those loop dimensions; the result, of ``sizes``, is written at ``result_dims`` (default:
        the first loops) as ``body(*operand elements)``, or with ``start`` (its first value)
        ``body(*operand elements, the result so far)``."""
        ir, linalg = self.ir, self.linalg
        loops = len(iterators)
        out = self.tensor.empty(sizes, self.element) if start is None else start
        dims = [dims for _, dims in operands] + [list(range(len(sizes))) if result_dims is None else result_dims]
        maps = [ir.AffineMapAttr.get(ir.AffineMap.get(loops, 0, [ir.AffineDimExpr.get(d) for d in group])) for group in dims]
        kinds = [ir.Attribute.parse(f"#linalg.iterator_type<{kind}>") for kind in iterators]
        with self.named(name):
            op = linalg.GenericOp([out.type], [v for v, _ in operands], [out], ir.ArrayAttr.get(maps), ir.ArrayAttr.get(kinds))
        block = op.regions[0].blocks.append(*[ir.RankedTensorType(v.type).element_type for v, _ in operands], self.element)
        with ir.InsertionPoint(block):
            args = list(block.arguments)
            linalg.YieldOp([body(*(args if start is not None else args[:-1]))])
        return op.result

    def loop_index(self, dim: int):
        return self.linalg.IndexOp(self.ir.IntegerAttr.get(self.ir.IntegerType.get_signless(64), dim)).result

    # --- shapes -----------------------------------------------------------------------------------------
    def type(self, sizes: Sequence[int | None], element=None):
        return self.ir.RankedTensorType.get([self.dynamic if s is None else s for s in sizes], element or self.element)

    def sized_type(self, sizes: Sequence) -> object:
        """The tensor type of ``sizes`` (ints static, index values dynamic)."""
        return self.type([s if isinstance(s, int) else None for s in sizes])

    def width(self, value) -> int:
        return self.ir.RankedTensorType(value.type).shape[-1]

    def dim(self, value, axis: int):
        return self.tensor.dim(value, self.constant_index(axis))

    def collapse(self, value, groups: list[list[int]], name: str | None = None):
        shape = self.ir.RankedTensorType(value.type).shape
        sizes = [None if any(shape[d] == self.dynamic for d in group) else int(np.prod([shape[d] for d in group]))
                 for group in groups]
        with self.named(name):
            return self.tensor.collapse_shape(self.type(sizes), value, self.reassociation(groups))

    def expand(self, value, groups: list[list[int]], sizes: list, name: str | None = None):
        dynamic = [s for s in sizes if not isinstance(s, int)]
        static = [s if isinstance(s, int) else self.dynamic for s in sizes]
        with self.named(name):
            return self.tensor.expand_shape(self.sized_type(sizes), value, self.reassociation(groups), dynamic, static)

    def reassociation(self, groups: list[list[int]]):
        i64 = self.ir.IntegerType.get_signless(64)
        return self.ir.ArrayAttr.get([self.ir.ArrayAttr.get([self.ir.IntegerAttr.get(i64, d) for d in group]) for group in groups])

    def slice(self, value, offsets: list, sizes: list, drop: Sequence[int] = (), name: str | None = None):
        """``value[offsets : offsets + sizes]`` (unit strides), without the dimensions ``drop``."""
        kept = [s for d, s in enumerate(sizes) if d not in drop]
        with self.named(name):
            return self.tensor.extract_slice(self.sized_type(kept), value, *self.mixed(offsets, sizes))

    def insert(self, value, into, offsets: list, sizes: list):
        return self.tensor.insert_slice(value, into, *self.mixed(offsets, sizes))

    def mixed(self, offsets: list, sizes: list) -> list:
        """The dynamic and static offsets, sizes and strides of a slice op."""
        dynamic = lambda values: [v for v in values if not isinstance(v, int)]  # noqa: E731
        static = lambda values: [v if isinstance(v, int) else self.dynamic for v in values]  # noqa: E731
        ones = [1] * len(sizes)
        return [dynamic(offsets), dynamic(sizes), [], static(offsets), static(sizes), ones]

    def concat(self, values: list, axis: int, sizes: list):
        return values[0] if len(values) == 1 else self.tensor.concat(self.sized_type(sizes), axis, values)

    def pad(self, value, axis: int, extra):
        """``value`` with ``extra`` (an int or an index value) zeros after the end of ``axis``."""
        if isinstance(extra, int) and extra == 0:
            return value
        ir, tensor = self.ir, self.tensor
        shape = ir.RankedTensorType(value.type).shape
        rank = len(shape)
        static = isinstance(extra, int)
        high = [(extra if static else self.dynamic) if d == axis else 0 for d in range(rank)]
        sizes = [shape[d] + extra if d == axis and static and shape[d] != self.dynamic else shape[d] for d in range(rank)]
        kind = self.type([None if size == self.dynamic or (d == axis and not static) else size for d, size in enumerate(sizes)])
        padded = tensor.PadOp(kind, value, [], [] if static else [extra], [0] * rank, high)
        with ir.InsertionPoint(padded.region.blocks.append(*[self.index] * rank)):
            tensor.YieldOp(self.arith.constant(self.element, 0.0))
        return padded.result

    def transpose(self, value, permutation: list[int], sizes: list, name: str | None = None):
        with self.named(name):
            return self.linalg.transpose(value, outs=[self.tensor.empty(sizes, self.element)], permutation=permutation).results[0]

    def broadcast(self, vector, sizes: list, dims: list[int], name: str | None = None):
        """``vector`` repeated along the dimensions ``dims`` of a tensor of ``sizes``."""
        with self.named(name):
            return self.linalg.broadcast(vector, outs=[self.tensor.empty(sizes, self.element)], dimensions=dims).results[0]

    def broadcast_rows(self, vector, rows: list, name: str | None = None):
        return self.broadcast(vector, [*rows, self.width(vector)], list(range(len(rows))), name)

    def permute_units(self, value, positions: list[int], width: int):
        """``out[..., i] = value[..., positions[i]]`` (the table read as an operand at ``i``)."""

        def body(position):
            return self.tensor.extract(value, [self.loop_index(0), self.loop_index(1), self.as_index(position)])

        return self.generic([(self.index_table(positions), [2])], [self.batch, self.time, width], ["parallel"] * 3, body)

    # --- constants --------------------------------------------------------------------------------------
    def weight(self, i: int, name: str, rows: list[int] | None = None, suffix: str = "reordered"):
        """Layer ``i``'s weight ``name``, or its ``rows`` in that order (named with ``suffix``)."""
        array = self.spec.tensors[f"layers.{i}.{name}"]
        if rows is None or rows == list(range(len(array))):
            return self.constant(f"layers.{i}.{name}", array)
        return self.constant(f"layers.{i}.{name}.{suffix}", array[rows])

    def constant(self, name: str, array: np.ndarray):
        """A constant tensor of the element type: the float64 weights cast as the dtype holds them,
        kept as a named blob (``dense_resource``, one per name) at the end of the module's text."""
        ir = self.ir
        data = np.ascontiguousarray(array, dtype=NUMPY_DTYPES[self.dtype])
        if name not in self.resources:
            self.resources[name] = (data, ir.DenseResourceElementsAttr.get_from_buffer(memoryview(data), name, self.type(data.shape)))
        held, attribute = self.resources[name]
        assert np.array_equal(held, data), f"two weights named {name}"
        with self.named(name):
            return self.arith.ConstantOp(self.type(data.shape), attribute).result

    def index_table(self, values: Sequence[int]):
        """A constant table of positions, as ``i32`` (``as_index`` converts an entry): IREE 3.13
        crashes on constant tensors of ``index`` that are not splats."""
        return self.arith.constant(self.ir.RankedTensorType.get([len(values)], self.ir.IntegerType.get_signless(32)),
                                   self.ir.DenseElementsAttr.get(np.asarray(values, dtype=np.int32)))

    def as_index(self, entry):
        return self.arith.index_cast(self.index, entry)

    def constant_index(self, value: int):
        return self.arith.constant(self.index, value)

    @contextmanager
    def named(self, name: str | None) -> Iterator[None]:
        """Ops made inside get ``name`` as their location, which the printer uses as SSA name."""
        if name is None:
            yield
            return
        with self.ir.Location.name(name):
            yield
