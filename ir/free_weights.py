"""The initializer of free weights: the weights a growth expansion may set to anything
(docs/growth.md).

``normal:S`` draws from a normal distribution of standard deviation S, ``uniform:S`` uniformly
from [-S, S], ``zeros`` gives 0. Every draw is rounded to a multiple of ``2**-GRID_BITS``: a dyadic
rational, so the same number is the exact weight of a layered model (``mpq``) and the float64
weight of a compiled one, and below ``2**(24 - GRID_BITS)`` in magnitude float32 holds it exactly
too. Draws come from numpy's PCG64 generator seeded by the caller, so a seed gives the same weights
on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gmpy2 import mpq
from lsrl.ir.errors import LsrlError

GRID_BITS = 20
KINDS = ("normal", "uniform", "zeros")
DEFAULT = "normal:0.02"


@dataclass(frozen=True)
class Initializer:
    kind: str
    scale: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Initializer":
        """``normal:0.02``, ``uniform:0.1`` or ``zeros``."""
        kind, _, scale = text.partition(":")
        if kind not in KINDS:
            raise LsrlError(f"unknown initializer {text!r}: expected normal:STD, uniform:BOUND or zeros")
        if kind == "zeros":
            if scale:
                raise LsrlError(f"the initializer zeros takes no scale (got {text!r})")
            return cls(kind)
        try:
            value = float(scale)
        except ValueError:
            raise LsrlError(f"initializer {text!r}: {kind} needs a scale, as in {kind}:0.02") from None
        if not (0 <= value < 2**10):
            raise LsrlError(f"initializer {text!r}: the scale must lie in [0, 1024)")
        return cls(kind, value)

    def __str__(self) -> str:
        return self.kind if self.kind == "zeros" else f"{self.kind}:{self.scale}"

    def integers(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` draws as integers k: the weights are ``k / 2**GRID_BITS``."""
        if self.kind == "normal":
            draws = rng.normal(0.0, self.scale, count)
        elif self.kind == "uniform":
            draws = rng.uniform(-self.scale, self.scale, count)
        else:
            draws = np.zeros(count)
        return np.rint(draws * 2.0**GRID_BITS).astype(np.int64)

    def exact(self, rng: np.random.Generator, count: int) -> list[mpq]:
        return [mpq(int(k), 2**GRID_BITS) for k in self.integers(rng, count)]

    def floats(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return (self.integers(rng, count) / 2.0**GRID_BITS).reshape(shape)


DEFAULT_INITIALIZER = Initializer.parse(DEFAULT)
