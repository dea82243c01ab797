"""The values a compiled model is built for: an intervention that leaves them tests nothing.

The compiler builds a model for the values its range analysis (``passes.ranges``) finds every
program value can take: intervals and lattices (``passes.lattice``) from the inputs' promises. A
comparison's ReLUs are fitted to the gap between lattice points, a value whose sign is known is
carried through a ReLU in one unit. An interchange intervention can give a value a combination of
its parts that no input gives it (``eq`` as ``relu_a`` of one input minus ``relu_b`` of another);
where the patched program leaves the analysed values anywhere, the model promises nothing, and
``verify`` counts the intervention as out of domain rather than as a success or a failure.
"""

from __future__ import annotations

import numpy as np

from lsrl.ir.graph import Graph

TOLERANCE = 1e-6


class Domain:
    def __init__(self, graph: Graph, input_range: object, integer_inputs: bool, max_len: int | None):
        from lsrl.passes.ranges import analyze

        ranges = analyze(graph, input_range, max_len, integer_inputs)
        self.bounds = {n: (np.array([float(i.lo) for i in box]), np.array([float(i.hi) for i in box]))
                       for n, box in ranges.items()}
        self.lattices = {n: ranges.lattice(n) for n in ranges}

    def inside(self, values: dict[int, np.ndarray]) -> np.ndarray:
        """Per sequence of the batch (``values[node]``: ``[batch, time, dim]``): whether every
        node's every value lies in its interval and on its lattice."""
        inside = None
        for node, value in values.items():
            if node not in self.bounds:
                continue
            lo, hi = self.bounds[node]
            scale = TOLERANCE * (1 + np.abs(value))
            ok = (value >= lo - scale) & (value <= hi + scale)
            for unit, lattice in enumerate(self.lattices[node]):
                if lattice is None:
                    continue
                v, step, offset = value[..., unit], float(lattice.step), float(lattice.offset)
                if step == 0:
                    ok[..., unit] &= np.abs(v - offset) <= TOLERANCE * (1 + abs(offset))
                else:
                    k = (v - offset) / step
                    ok[..., unit] &= np.abs(k - np.round(k)) <= TOLERANCE * (1 + np.abs(k))
            per_sequence = ok.reshape(ok.shape[0], -1).all(axis=1)
            inside = per_sequence if inside is None else inside & per_sequence
        return inside
