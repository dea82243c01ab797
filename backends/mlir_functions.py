"""The mlir target's map layers: the float functions of ``ir.graph.FLOAT_FUNCTIONS`` as ``math``
and ``arith`` operations, each unit of a layer with its own function (``backends/mlir_module.py``
calls ``map_layer``).

Every function is built from IREE's ``exp``, ``log`` and ``sqrt``, which are within an ulp of the
correctly rounded values in both dtypes (measured), in forms that keep each value within a few
ulps (``tests/test_mlir.py`` measures them against long double; the rounding analysis assumes 8
unit roundoffs, ``backends/rounding.py``): ``sigmoid(x) = 1 / (1 + e)`` for ``x >= 0``, else ``e /
(1 + e)``, with ``e = exp(-|x|)`` (no overflow, no cancellation), ``softplus(x) = max(x, 0) +
log1p(exp(-|x|))`` (numpy's ``logaddexp(0, x)``), ``silu(x) = x sigmoid(x)``, ``rsqrt(x) = 1 /
sqrt(x)``. IREE 3.13's own ``log1p`` and ``expm1`` are not within ulps in float64 (errors of
1e-4 relative near 0: ``1 + x`` rounds first), and its float64 ``tanh`` needs a libm that the CPU
executables do not link: so ``log1p`` and ``expm1`` are Goldberg's and Kahan's corrections of
``log(1 + x)`` and ``exp(x) - 1`` (a few ulps), and ``tanh(x) = -expm1(-2|x|) / (2 +
expm1(-2|x|))`` with the sign of ``x``. So the mlir target states the torch target's bounds for
map layers too.
"""

from __future__ import annotations

from typing import Callable, Sequence

from lsrl.backends.mlir_ops import TensorOps
from lsrl.ir.layered import IDENTITY


class FunctionOps(TensorOps):
    """Map layers, on ``[rows, width]`` tensors."""

    def float_function(self, name: str) -> Callable:
        """The scalar body of one float function."""
        arith, math = self.arith, self.math
        zero, half, one, two = (arith.constant(self.element, value) for value in (0.0, 0.5, 1.0, 2.0))

        def equal(a, b):
            return arith.cmpf(arith.CmpFPredicate.OEQ, a, b)

        def log1p(x):  # log(u) x / (u - 1) for u = 1 + x, rounded: exact where u - 1 is x's rounding
            u = arith.addf(one, x)
            moved = arith.subf(u, one)
            return arith.select(equal(moved, zero), x, arith.divf(arith.mulf(math.log(u), x), moved))

        def expm1(x):  # (u - 1) x / log(u) for u = exp(x)
            u = math.exp(x)
            moved = arith.subf(u, one)
            corrected = arith.divf(arith.mulf(moved, x), math.log(u))
            return arith.select(equal(u, one), x, arith.select(equal(moved, arith.negf(one)), moved, corrected))

        def tanh(x):
            m = expm1(arith.mulf(arith.negf(two), math.absf(x)))
            return math.copysign(arith.divf(arith.negf(m), arith.addf(two, m)), x)

        def sigmoid(x):  # 1 / (1 + e) or e / (1 + e) for e = exp(-|x|): within ulps of the value, no overflow
            small = math.exp(arith.negf(math.absf(x)))
            positive = arith.cmpf(arith.CmpFPredicate.OGE, x, zero)
            return arith.divf(arith.select(positive, one, small), arith.addf(one, small))

        def softplus(x):
            return arith.addf(arith.maximumf(x, zero), log1p(math.exp(arith.negf(math.absf(x)))))

        return {
            "exp": math.exp, "log": math.log, "tanh": tanh, "sqrt": math.sqrt,
            "sigmoid": sigmoid, "softplus": softplus,
            "silu": lambda x: arith.mulf(x, sigmoid(x)),
            "rsqrt": lambda x: arith.divf(one, math.sqrt(x)),
        }[name]

    def map_layer(self, pre, functions: Sequence[str], name: str):
        """``f_u(pre[:, u])`` for every unit ``u`` (``pre``: ``[rows, width]``): one
        ``linalg.generic`` that computes each function the layer has and keeps the unit's, chosen by
        a constant table of function numbers read at the unit."""
        arith = self.arith
        present = list(dict.fromkeys(f for f in functions if f != IDENTITY))
        codes = self.index_table([present.index(f) + 1 if f != IDENTITY else 0 for f in functions])
        i32 = self.ir.IntegerType.get_signless(32)

        def body(x, code):
            value = x
            for number, function in enumerate(present, start=1):
                chosen = arith.cmpi(arith.CmpIPredicate.eq, code, arith.constant(i32, number))
                value = arith.select(chosen, self.float_function(function)(x), value)
            return value

        return self.generic([(pre, [0, 1]), (codes, [1])], [self.rows, self.width(pre)], ["parallel"] * 2, body, name=name)
