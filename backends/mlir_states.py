"""The recurrences of the mlir target's state layers over whole sequences, as MLIR operations on
tensors (``backends/mlir_module.py`` picks them by the stages of each state layer in the schedule
plan, ``passes.schedule``): delay lines, running sums and rotations without a loop over time
(blocked scans); decays, gated states and matrix transitions as a loop over time inside one
dispatch (``sequence_loop``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from lsrl.backends.mlir_ops import TensorOps

SCAN_BLOCK = 32  # steps summed within one block by a running sum's scan
SCAN_LEVELS = 2  # blocks of blocks before the sums over every earlier block
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
