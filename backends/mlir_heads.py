"""The mlir target's layers with heads (``ir.heads``): delta-rule states and solves, as MLIR
operations on tensors (``backends/mlir_module.py`` places what the heads emit into the layer's
units ``W x + b``).

A delta head keeps ``S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T`` (``keys x
values``, from 0). Each column ``j`` of ``S`` changes on its own: ``S' = alpha S``, ``u_j =
beta (v_j - sum_i k_i S'_ij)``, ``S_ij = S'_ij + k_i u_j`` (``delta_column``, the interpreter's
order of operations, ``ir.recurrences.delta``). So every ``linalg.generic`` here runs one column
per element, its ``keys`` entries as scalars, and time goes in blocks of ``DELTA_BLOCK`` steps:
an ``scf.for`` over the blocks gives the state at the end of each (one generic per block, with
``keys`` results), then one generic over (batch, block, step, column) runs each block again from
its start up to its step and emits the read ``q_t^T S_t`` (or, without a query, the state's
entries). (The gated layers' loop inside one dispatch, ``StateOps.sequence_loop``, reads each
step's start back from its outputs, which for a head with a query are not its state.)

A solve head emits ``(M + diag(shift))^-1 q`` for every token: one generic over the rows whose
every element solves its system, unrolled (``size`` is a constant): Gaussian elimination with
partial pivoting (steps 0), or the program's number of conjugate-gradient steps. A singular
matrix gives infinities or NaNs (the interpreter raises; a compiled model cannot).
"""

from __future__ import annotations

from typing import Callable, Sequence

from lsrl.backends.mlir_ops import Fixed, TensorOps
from lsrl.ir.heads import NO_QUERY, DeltaHead, SolveHead

DELTA_BLOCK = 16  # steps of a delta head's column that one element of a linalg.generic runs


class HeadOps(TensorOps):
    """Delta and solve heads."""

    # --- the scalar arithmetic ------------------------------------------------------------------------
    def delta_column(self, column: list, alpha, beta, keys: list, value) -> list:
        """Column ``j`` of ``S_t`` from column ``j`` of ``S_{t-1}`` (``value``: ``v_j``)."""
        arith = self.arith
        kept = [arith.mulf(alpha, s) for s in column]
        written = arith.mulf(beta, arith.subf(value, self.dot(keys, kept)))
        return [arith.addf(s, arith.mulf(k, written)) for k, s in zip(keys, kept)]

    def dot(self, left: Sequence, right: Sequence):
        """``sum_i left_i right_i``, in order."""
        arith = self.arith
        total = arith.mulf(left[0], right[0])
        for a, b in zip(left[1:], right[1:]):
            total = arith.addf(total, arith.mulf(a, b))
        return total

    # --- delta heads --------------------------------------------------------------------------------------
    def delta_forward(self, u, head: DeltaHead, name: str):
        """What ``head`` emits at every step (``[batch, time, values]``, or ``[batch, time, keys *
        values]`` without a query) from the layer's units ``u`` (``[batch, time, width]``)."""
        arith, tensor, steps = self.arith, self.tensor, DELTA_BLOCK
        batch, keys, values, width = self.batch, head.keys, head.values, self.width(u)
        zero, one = self.constant_index(0), self.constant_index(1)
        blocks = arith.ceildivui(self.time, self.constant_index(steps))
        extra = arith.subi(arith.muli(blocks, self.constant_index(steps)), self.time)
        grid = self.expand(self.pad(u, 1, extra), [[0], [1, 2], [3]], [batch, blocks, steps, width])

        def run(column: list, at: Callable, j) -> list[list]:
            """The column after each step of a block, from ``column``; ``at(step, unit)`` reads ``u``."""
            states = []
            for s in range(steps):
                column = self.delta_column(column, at(s, head.alpha), at(s, head.beta),
                                           [at(s, head.key + i) for i in range(keys)],
                                           at(s, arith.addi(j, self.constant_index(head.value))))
                states.append(column)
            return states

        def unit(index):
            return self.constant_index(index) if isinstance(index, int) else index

        # the state at the end of every block (a carried tensor that starts empty: mlir_states.loop)
        with self.named(f"{name}.ends"):
            loop = self.scf.ForOp(zero, blocks, one, [tensor.empty([batch, blocks, keys, values], self.element)])
        with self.ir.InsertionPoint(loop.body):
            n, (ends,) = loop.induction_variable, loop.inner_iter_args
            first = arith.cmpi(arith.CmpIPredicate.eq, n, zero)
            stored = self.slice(ends, [0, arith.select(first, zero, arith.subi(n, one)), 0, 0], [batch, 1, keys, values],
                                drop=[1])
            block = self.slice(grid, [0, n, 0, 0], [batch, 1, steps, width], drop=[1])
            nothing = arith.constant(self.element, 0.0)

            def end_of_block(*column):
                b, j = self.loop_index(0), self.loop_index(1)
                start = [arith.select(first, nothing, s) for s in column]
                return run(start, lambda s, index: tensor.extract(block, [b, self.constant_index(s), unit(index)]), j)[-1]

            rows = self.generic([(stored, [0, Fixed(i), 1]) for i in range(keys)], [batch, values], ["parallel"] * 2,
                                end_of_block, results=keys)
            for i, row in enumerate(rows):
                ends = self.insert(row, ends, [0, n, i, 0], [batch, 1, 1, values])
            self.scf.YieldOp([ends])
        ends = loop.results[0]

        # every step: each block again from its start (zeros, then the ends of the blocks but the last)
        zeros = self.linalg.fill(arith.constant(self.element, 0.0), outs=[tensor.empty([batch, 1, keys, values], self.element)])
        before = self.slice(ends, [0, 0, 0, 0], [batch, arith.subi(blocks, one), keys, values])
        starts = self.concat([zeros, before], 1, [batch, blocks, keys, values])
        reads = head.query != NO_QUERY
        loops = 4 if reads else 5  # (batch, block, step, [row,] column)

        def emitted(*column):
            b, n, k, j = (self.loop_index(d) for d in (0, 1, 2, loops - 1))
            states = run(list(column), lambda s, index: tensor.extract(grid, [b, n, self.constant_index(s), unit(index)]), j)
            chosen = states[0]
            for s, state in enumerate(states[1:], start=1):
                later = arith.cmpi(arith.CmpIPredicate.uge, k, self.constant_index(s))
                chosen = [arith.select(later, new, old) for new, old in zip(state, chosen)]
            if reads:
                return self.dot([tensor.extract(grid, [b, n, k, self.constant_index(head.query + i)]) for i in range(keys)], chosen)
            row, entry = self.loop_index(3), chosen[0]
            for i, value in enumerate(chosen[1:], start=1):
                entry = arith.select(arith.cmpi(arith.CmpIPredicate.eq, row, self.constant_index(i)), value, entry)
            return entry

        sizes = [batch, blocks, steps, values] if reads else [batch, blocks, steps, keys, values]
        out = self.generic([(starts, [0, 1, Fixed(i), loops - 1]) for i in range(keys)], sizes, ["parallel"] * loops, emitted)
        joined = self.collapse(out, [[0], [1, 2], [3]] if reads else [[0], [1, 2], [3, 4]])
        return self.slice(joined, [0, 0, 0], [batch, self.time, self.width(joined)], name=name)

    def delta_step(self, pre, state, head: DeltaHead, name: str):
        """One token of ``head``: (what it emits ``[batch, n]``, its new state ``[batch, keys * values]``)
        from the layer's units ``pre`` (``[batch, width]``) and its state before the token."""
        arith, tensor = self.arith, self.tensor
        batch, keys, values = self.batch, head.keys, head.values
        previous = self.expand(state, [[0], [1, 2]], [batch, keys, values])
        reads = head.query != NO_QUERY

        def body(*column):
            b, j = self.loop_index(0), self.loop_index(1)
            at = lambda index: tensor.extract(pre, [b, self.constant_index(index) if isinstance(index, int) else index])  # noqa: E731
            new = self.delta_column(list(column), at(head.alpha), at(head.beta), [at(head.key + i) for i in range(keys)],
                                    at(arith.addi(j, self.constant_index(head.value))))
            return [*new, self.dot([at(head.query + i) for i in range(keys)], new)] if reads else new

        results = self.generic([(previous, [0, Fixed(i), 1]) for i in range(keys)], [batch, values], ["parallel"] * 2, body,
                               name=name, results=keys + reads)
        rows = [self.expand(row, [[0], [1, 2]], [batch, 1, values]) for row in results[:keys]]
        new_state = self.collapse(self.concat(rows, 1, [batch, keys, values]), [[0], [1, 2]])
        return (results[-1] if reads else new_state), new_state

    # --- solve heads --------------------------------------------------------------------------------------
    def solve_head(self, pre, head: SolveHead, shift, steps: int, name: str):
        """``(M + diag(shift))^-1 q`` for every row of ``pre`` (``[rows, width]``): ``[rows, size]``."""
        arith, tensor, n = self.arith, self.tensor, head.size

        def body():
            r = self.loop_index(0)
            at = lambda index: tensor.extract(pre, [r, self.constant_index(index)])  # noqa: E731
            added = [tensor.extract(shift, [self.constant_index(head.out + a)]) for a in range(n)]
            matrix = [[arith.addf(at(head.matrix + a * n + c), added[a]) if a == c else at(head.matrix + a * n + c)
                       for c in range(n)] for a in range(n)]
            query = [at(head.query + a) for a in range(n)]
            return self.conjugate_gradient(matrix, query, steps) if steps else self.eliminate(matrix, query)

        parts = self.generic([], [self.rows], ["parallel"], body, name=name, results=n)
        columns = [self.expand(part, [[0, 1]], [self.rows, 1]) for part in parts]
        return self.concat(columns, 1, [self.rows, n])

    def eliminate(self, a: list[list], b: list) -> list:
        """The solution of ``a x = b`` by Gaussian elimination with partial pivoting, unrolled (the
        pivot row chosen and swapped in by selects)."""
        arith, n = self.arith, len(b)
        rows = [[*row, value] for row, value in zip(a, b)]
        for c in range(n):
            pivot, at = rows[c], self.constant_index(c)
            for r in range(c + 1, n):
                larger = arith.cmpf(arith.CmpFPredicate.OGT, self.math.absf(rows[r][c]), self.math.absf(pivot[c]))
                pivot = [arith.select(larger, new, old) for new, old in zip(rows[r], pivot)]
                at = arith.select(larger, self.constant_index(r), at)
            for r in range(c + 1, n):  # the row the pivot came from takes row c's place
                moved = arith.cmpi(arith.CmpIPredicate.eq, at, self.constant_index(r))
                rows[r] = [arith.select(moved, old, own) for old, own in zip(rows[c], rows[r])]
            rows[c] = pivot
            for r in range(c + 1, n):
                factor = arith.divf(rows[r][c], pivot[c])
                rows[r] = [*rows[r][:c + 1], *(arith.subf(x, arith.mulf(factor, y)) for x, y in zip(rows[r][c + 1:], pivot[c + 1:]))]
        x = [None] * n
        for r in reversed(range(n)):
            total = rows[r][n]
            for j in range(r + 1, n):
                total = arith.subf(total, arith.mulf(rows[r][j], x[j]))
            x[r] = arith.divf(total, rows[r][r])
        return x

    def conjugate_gradient(self, a: list[list], b: list, steps: int) -> list:
        """``steps`` conjugate-gradient steps on ``a x = b`` from 0, as ``ir.recurrences`` takes them."""
        arith = self.arith
        zero = arith.constant(self.element, 0.0)
        x, r, p = [zero] * len(b), list(b), list(b)
        rr = self.dot(r, r)
        for _ in range(steps):
            ap = [self.dot(row, p) for row in a]
            going = arith.cmpf(arith.CmpFPredicate.OGT, rr, zero)
            alpha = arith.select(going, arith.divf(rr, self.dot(p, ap)), zero)
            x = [arith.addf(xi, arith.mulf(alpha, pi)) for xi, pi in zip(x, p)]
            r = [arith.subf(ri, arith.mulf(alpha, api)) for ri, api in zip(r, ap)]
            following = self.dot(r, r)
            ratio = arith.select(going, arith.divf(following, rr), zero)
            p = [arith.addf(ri, arith.mulf(ratio, pi)) for ri, pi in zip(r, p)]
            rr = following
        return x
