"""The recurrences of the mlir target's state layers over whole sequences, as MLIR operations on
tensors (``backends/mlir_module.py`` picks them by the stages of each state layer in the schedule
plan, ``passes.schedule``): delay lines without a loop over time; running sums, rotations,
decays, gated states and matrix transitions as a loop over time inside one dispatch
(``sequence_loop``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from lsrl.backends.mlir_ops import TensorOps

SEQUENCE_MAPPING = "#iree_linalg_ext.split_reduction_mapping<0>"  # an scf.forall's iterations, one workgroup each


class StateOps(TensorOps):
    """The recurrences, on ``[batch, time, units]`` tensors."""

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

    def matrix_recurrence(self, v, transition, init, name: str):
        """``h_t = A h_{t-1} + v_t`` from ``h_0 = init`` for a constant ``A`` (``transition``,
        ``[units, units]``; ``v``: ``[batch, time, units]``): one product per step
        (``sequence_loop``)."""
        arith, width = self.arith, self.width(v)

        def advance(b, t, first, previous, into):
            start = self.generic([(previous, [0]), (init, [0])], [width], ["parallel"],
                                 lambda h, h0, _: arith.select(first, h0, h), start=into)
            term = self.slice(v, [b, t, 0], [1, 1, width], drop=[1])
            return self.collapse(self.matmul(self.expand(start, [[0, 1]], [1, width]), transition, term), [[0, 1]])

        return self.sequence_loop(width, advance, name)

    def sequence_loop(self, width: int, advance: Callable, name: str):
        """``h_t = advance(b, t, first, h_{t-1}, into)`` for every sequence ``b`` of the batch and step
        ``t``, from ``advance``'s own start where ``first`` (``t == 0``): ``[batch, time, width]``.
        ``h_{t-1}`` and ``into`` (where ``h_t`` goes) are ``[width]``.

        The whole loop over time is one dispatch (a ``flow.dispatch.region``): inside, an
        ``scf.forall`` over the sequences, one workgroup each, runs the ``scf.for`` over time,
        each step one ``linalg.generic`` on a ``[width]`` vector. A loop over time outside a
        dispatch costs IREE a submission per round (about 0.2 ms here) and copies of the outputs;
        inside one it costs a few instructions per step. IREE 3.13 distributes an ``scf.forall``
        inside a dispatch region only with the mapping of its split reductions
        (``SEQUENCE_MAPPING``), which hands each iteration to a workgroup; a dispatch of its own
        needs such distributed writes. The loop carries only the outputs and reads ``h_{t-1}``
        back from them (a carried ``h`` is not written in place)."""
        ir, arith, scf, tensor = self.ir, self.arith, self.scf, self.tensor
        sizes = [self.batch, self.time, width]
        zero, one = self.constant_index(0), self.constant_index(1)
        with self.named(name):
            region = self.flow.DispatchRegionOp([self.sized_type(sizes)], [self.batch, self.time], [])
        with ir.InsertionPoint(region.body.blocks.append()):
            mapping = ir.ArrayAttr.get([ir.Attribute.parse(SEQUENCE_MAPPING)])
            forall = scf.ForallOp([0], [self.batch], [1], shared_outs=[tensor.empty(sizes, self.element)], mapping=mapping)
            with ir.InsertionPoint(forall.body):
                b, (shared,) = forall.induction_variables[0], forall.inner_iter_args
                own = self.slice(shared, [b, 0, 0], [1, self.time, width], drop=[0])
                loop = scf.ForOp(zero, self.time, one, [own])
                with ir.InsertionPoint(loop.body):
                    t, (written,) = loop.induction_variable, loop.inner_iter_args
                    first = arith.cmpi(arith.CmpIPredicate.eq, t, zero)
                    back = arith.select(first, zero, arith.subi(t, one))
                    previous = self.slice(written, [back, 0], [1, width], drop=[0])
                    into = self.slice(written, [t, 0], [1, width], drop=[0])
                    h = advance(b, t, first, previous, into)
                    scf.YieldOp([self.insert(h, written, [t, 0], [1, width])])
                in_parallel = scf.InParallelOp()
            with ir.InsertionPoint(in_parallel.region.blocks[0]):
                tensor.ParallelInsertSliceOp(loop.results[0], shared, *self.mixed([b, 0, 0], [1, self.time, width]))
            self.flow.ReturnOp([forall.results[0]])
        return region.results[0]

    def sums(self, v, cycles: Sequence[Sequence[int]], copies: set[int], init: np.ndarray, init_name: str,
             name: str | None = None):
        """For every unit ``j`` of ``v`` (``[batch, time, units]``): ``h_t = v_t`` where ``j`` is in
        ``copies``, else ``h_t = P h_{t-1} + v_t`` from ``init``, for the permutation ``P`` of
        ``cycles`` (``cycle[k]`` takes the previous value of ``cycle[k + 1]``; a unit in no cycle
        takes its own: a running sum). A loop over time inside one dispatch (``sequence_loop``):
        each step one generic whose unit ``j`` adds ``v_t[j]`` to the previous value of the unit
        ``P`` brings to it (a constant table), the recurrence's own sum. (A blocked scan without a
        loop, sums within blocks as products with triangular matrices of ones, was 1.4 to 6 times
        slower on tok2tok, and its IREE compile 1.6 times longer.)"""
        arith, tensor, width = self.arith, self.tensor, self.width(v)
        successor = list(range(width))
        for cycle in cycles:
            for p, unit in enumerate(cycle):
                successor[unit] = cycle[(p + 1) % len(cycle)]
        table = self.index_table(successor)
        copy_mask = self.index_table([int(unit in copies) for unit in range(width)])
        start = self.constant(init_name, init)
        no = arith.constant(self.ir.IntegerType.get_signless(32), 0)

        def advance(b, t, first, previous, into):
            term = self.slice(v, [b, t, 0], [1, 1, width], drop=[0, 1])

            def body(term_j, moved, copy, _):
                unit = self.as_index(moved)
                before = arith.select(first, tensor.extract(start, [unit]), tensor.extract(previous, [unit]))
                return arith.select(arith.cmpi(arith.CmpIPredicate.ne, copy, no), term_j, arith.addf(before, term_j))

            return self.generic([(term, [0]), (table, [0]), (copy_mask, [0])], [width], ["parallel"], body, start=into)

        return self.sequence_loop(width, advance, name or init_name)

    def gated_recurrence(self, v, gate, init, name: str):
        """``h_t = a_t * h_{t-1} + v_t`` from ``h_0 = init``, elementwise (``v``: ``[batch, time,
        units]``; ``gate``: ``a`` of the same shape, or one ``[units]`` for every step): a product
        then a sum per step, in order, as the layered model computes it (``sequence_loop``)."""
        arith, width = self.arith, self.width(v)
        per_step = self.ir.RankedTensorType(gate.type).rank == 3

        def advance(b, t, first, previous, into):
            def at_step(value):
                return self.slice(value, [b, t, 0], [1, 1, width], drop=[0, 1])

            a = at_step(gate) if per_step else gate
            return self.generic([(at_step(v), [0]), (a, [0]), (previous, [0]), (init, [0])], [width], ["parallel"],
                                lambda term, a_t, h, start, _: arith.addf(arith.mulf(a_t, arith.select(first, start, h)), term),
                                start=into)

        return self.sequence_loop(width, advance, name)

    def gated_step(self, h, gate, drive, name: str | None = None):
        """``gate * h + drive`` elementwise (``[batch, width]``): the product, then the sum, as the
        rounding analysis bounds it (one step of a gated layer)."""
        arith = self.arith
        return self.elementwise([h, gate, drive], lambda h_i, a, v: arith.addf(arith.mulf(a, h_i), v),
                                [self.batch, self.width(h)], name)
