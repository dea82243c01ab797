"""The recurrences of the mlir target's state layers over whole sequences, as MLIR operations on
tensors (``backends/mlir_module.py`` picks them by the stages of each state layer in the schedule
plan, ``passes.schedule``): delay lines, running sums and rotations without a loop over time
(blocked scans), decays and gated states in blocks of steps, matrix transitions as an ``scf.for``
over time.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from lsrl.backends.mlir_ops import Fixed, TensorOps

SCAN_BLOCK = 32  # steps summed within one block by a running sum's scan
SCAN_LEVELS = 2  # blocks of blocks before the sums over every earlier block
RECURRENCE_BLOCK = 16  # steps of a gated or scaled recurrence one element of a linalg.generic runs


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

    def loop(self, v, init, name: str, advance: Callable):
        """``h_t = advance(h_{t-1}, t, v_t)`` from ``h_0 = init`` by an ``scf.for`` over time
        (``v``: ``[batch, time, units]``; ``h``, ``v_t``: ``[batch, units]``).

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
            h = advance(h, t, self.slice(v, [0, t, 0], [self.batch, 1, width], drop=[1]))
            scf.YieldOp([self.insert(h, written, [0, t, 0], [self.batch, 1, width])])
        return loop.results[0]

    def blocked_recurrence(self, v, gate, init, name: str):
        """``h_t = a_t * h_{t-1} + v_t`` from ``h_0 = init``, elementwise (``v``: ``[batch, time,
        units]``; ``gate``: ``a`` of the same shape, or one ``[units]`` for every step), with time in
        blocks of ``RECURRENCE_BLOCK`` steps and a loop over the blocks, not over the steps.

        First the state at the start of every block: an ``scf.for`` over the blocks carrying those
        states only (``[batch, blocks + 1, units]``), each round one ``linalg.generic`` whose every
        element runs its unit's steps of the block. Then every step: one ``linalg.generic`` over
        (batch, block, step, unit) whose every element runs its block again from the block's start and
        keeps its step's value. Both do what the step-by-step recurrence does, a product then a sum
        per step, from the same start in the same order: its outputs (and its rounding), in parallel
        over the blocks, at ``RECURRENCE_BLOCK`` times its arithmetic. A loop over every step would
        cost IREE a submission and a copy of the outputs carried so far per step."""
        arith, tensor, steps, width = self.arith, self.tensor, RECURRENCE_BLOCK, self.width(v)
        batch, zero, one = self.batch, self.constant_index(0), self.constant_index(1)
        blocks = arith.ceildivui(self.time, self.constant_index(steps))
        extra = arith.subi(arith.muli(blocks, self.constant_index(steps)), self.time)
        sizes = [batch, blocks, steps, width]
        v = self.expand(self.pad(v, 1, extra), [[0], [1, 2], [3]], sizes)
        per_step = self.ir.RankedTensorType(gate.type).rank == 3
        if per_step:
            gate = self.expand(self.pad(gate, 1, extra), [[0], [1, 2], [3]], sizes)

        def operands(at: Callable) -> list:
            """Every step's gate and input term, as operands read ``at(step)``."""
            return [(value, at(k)) for k in range(steps) for value in ((gate, v) if per_step else (v,))]

        def run(h, *elements) -> list:
            """The value at every step of a block from ``h``, given each step's gate and input term."""
            values = []
            for k in range(steps):
                a, term = (elements[2 * k], elements[2 * k + 1]) if per_step else (elements[-1], elements[k])
                h = arith.addf(arith.mulf(a, h), term)
                values.append(h)
            return values

        # the loop carries the state at the end of every block, read back by the next round (IREE
        # 3.13 miscompiles a carried tensor that starts with values, as one holding init would)
        with self.named(f"{name}.ends"):
            loop = self.scf.ForOp(zero, blocks, one, [tensor.empty([batch, blocks, width], self.element)])
        with self.ir.InsertionPoint(loop.body):
            n, (ends,) = loop.induction_variable, loop.inner_iter_args
            first = arith.cmpi(arith.CmpIPredicate.eq, n, zero)
            stored = self.slice(ends, [0, arith.select(first, zero, arith.subi(n, one)), 0], [batch, 1, width], drop=[1])
            block_v = self.slice(v, [0, n, 0, 0], [batch, 1, steps, width], drop=[1])
            block_gate = self.slice(gate, [0, n, 0, 0], [batch, 1, steps, width], drop=[1]) if per_step else gate
            reads = operands(lambda k: [0, Fixed(k), 1])
            reads = [(block_gate if value is gate else block_v, dims) for value, dims in reads]
            end = self.generic([(stored, [0, 1]), (init, [1]), *reads, *([] if per_step else [(gate, [1])])],
                               [batch, width], ["parallel"] * 2,
                               lambda h, start, *elements: run(arith.select(first, start, h), *elements)[-1])
            self.scf.YieldOp([self.insert(end, ends, [0, n, 0], [batch, 1, width])])
        ends = loop.results[0]

        # the state at the start of every block: init, then the ends of the blocks but the last
        before = self.slice(ends, [0, 0, 0], [batch, arith.subi(blocks, one), width])
        starts = self.concat([self.broadcast(init, [batch, 1, width], [0, 1]), before], 1, [batch, blocks, width])

        def rerun(h, *elements):  # block n from its start, up to its step k
            k = self.loop_index(2)
            for step, value in enumerate(run(h, *elements)):  # the value of step k
                h = value if step == 0 else arith.select(arith.cmpi(arith.CmpIPredicate.uge, k, self.constant_index(step)), value, h)
            return h

        reads = operands(lambda k: [0, 1, Fixed(k), 3])
        values = self.generic([(starts, [0, 1, 3]), *reads, *([] if per_step else [(gate, [3])])], sizes, ["parallel"] * 4, rerun)
        joined = self.collapse(values, [[0], [1, 2], [3]])
        return self.slice(joined, [0, 0, 0], [batch, self.time, width], name=name)

    def gated_step(self, h, gate, drive, name: str | None = None):
        """``gate * h + drive`` elementwise (``[batch, width]``): the product, then the sum, as the
        rounding analysis bounds it (one step of a gated layer)."""
        arith = self.arith
        return self.elementwise([h, gate, drive], lambda h_i, a, v: arith.addf(arith.mulf(a, h_i), v),
                                [self.batch, self.width(h)], name)
