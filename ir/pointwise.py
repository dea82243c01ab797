"""The values of the non-linear stateless kinds (``relu``, ``step``, ``select`` and the float
functions), written once.

``relu``, ``step`` and ``select`` take numpy arrays of float64 or of exact ``mpq`` (object arrays)
and keep the mode of their inputs; the float functions (``FLOAT_FUNCTION_VALUES``) take float64
arrays only. The interpreter evaluates nodes with them and constant folding folds with them, so a
kind's meaning is stated in one place.
"""

from __future__ import annotations

import numpy as np
from lsrl.ir.numbers import ONE, ZERO, Number, inverse

Array = np.ndarray


def _zero_like(x: Array) -> object:
    return ZERO if x.dtype == object else 0.0


def relu(x: Array) -> Array:
    return np.where(x > 0, x, _zero_like(x))


def step(x: Array, low: tuple[Number, ...], high: tuple[Number, ...]) -> Array:
    """0 where x <= low, 1 where x >= high, linear in between (unit by unit)."""
    exact_mode = x.dtype == object
    lo = np.array(low, dtype=object if exact_mode else np.float64)
    slope = np.array([inverse(h - lo_) for lo_, h in zip(low, high)], dtype=object if exact_mode else np.float64)
    ramp = (x - lo) * slope
    return np.where(ramp >= 1, ONE if exact_mode else 1.0, relu(ramp))


def select(condition: Array, value: Array, big: tuple[Number, ...]) -> Array:
    """relu(v - big g) - relu(-v - big g): v where g = 0, 0 where big g >= |v|."""
    scaled = condition * np.array(big, dtype=object if condition.dtype == object else np.float64)
    return relu(value - scaled) - relu(-value - scaled)


def _sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow of exp(-x) for large negative x


def _rsqrt(x: Array) -> Array:
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(x)


# The float functions of ir.graph.FLOAT_FUNCTIONS: softplus(x) = log(1 + exp(x)), silu(x) = x sigmoid(x).
FLOAT_FUNCTION_VALUES = {
    "exp": np.exp,
    "log": np.log,
    "sigmoid": _sigmoid,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "silu": lambda x: x * _sigmoid(x),
    "tanh": np.tanh,
    "sqrt": np.sqrt,
    "rsqrt": _rsqrt,
}
