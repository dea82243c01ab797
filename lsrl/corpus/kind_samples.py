"""One small program per node kind, so that a test can cross every kind with every pass and target.

Each sample is `.lsrl` source whose graph holds the kind (the test checks that it does), and a
few input sequences. The sample's last line is the one that makes the kind, so a refusal must
point at a line of the sample. A new kind in ``lsrl.ir.graph.KINDS`` needs a sample here (the
test fails for a kind without one).
"""

from __future__ import annotations

from dataclasses import dataclass

from lsrl.ir.graph import FLOAT_FUNCTIONS


@dataclass(frozen=True)
class KindSample:
    kind: str
    source: str
    inputs: tuple[str, ...]  # sequences in the CLI's --input form: steps by spaces, units by commas

    @property
    def float_only(self) -> bool:
        return self.kind in FLOAT_FUNCTIONS


_TWO = ("1,2 3,-1 0,0 2,2", "-1,1 1/2,3")
_POSITIVE = ("1,2 3,1/2 2,2", "1/4,1 1/2,3")
_GATED = ("1,5 0,2 0,7 1,-1", "0,1 1,3")
_KEY_VALUE = ("1,0,2 0,1,3 1,0,5 0,1,-1", "1,1,1 1,0,2")


def _sample(kind: str, body: str, inputs: tuple[str, ...] = _TWO, width: int = 2) -> KindSample:
    return KindSample(kind, f"input x[{width}]\n{body}\n", inputs)


SAMPLES: tuple[KindSample, ...] = (
    _sample("input", "output x"),
    _sample("const", "output concat(x, [1, 2])"),
    _sample("affine", "output y = 2 * x[0] - x[1] + 1"),
    _sample("relu", "output relu(x[0] - x[1])"),
    _sample("step", "output larger(x[0], x[1])"),
    _sample("select", "output ifelse(larger(x[0], x[1]), x[0], x[1])"),
    _sample("mul", "output x[0] * x[1]"),
    *(_sample(name, f"output {name}(x)", _POSITIVE) for name in FLOAT_FUNCTIONS),
    _sample("concat", "output concat(relu(x), relu(-x))"),
    _sample("slice", "output relu(x)[1:2]"),
    _sample("state", "state s[2] = 0 <- s + x\noutput s"),
    _sample("gated_state", "state h[1] = 0 <- (1 - x[0]) * h + x[0] * x[1]\noutput h", _GATED),
    _sample("matrix_state", "output matrix_state(1/2, x[0:2], x[2:3])", _KEY_VALUE, width=3),
    _sample("read", "S = matrix_state(1/2, x[0:2], x[2:3])\noutput read(S, x[0:2])", _KEY_VALUE, width=3),
    _sample("delta_state", "output delta_state(1, 1, x[0:2], x[2:3])", _KEY_VALUE, width=3),
    _sample("solve", "H = matrix_state(1, x[0:2], x[0:2])\noutput solve(H, x[0:2], 1)", _KEY_VALUE, width=3),
)
