"""How closely grown compiled models agree with the originals, on every program of the test table.

    python3 benchmarks/growth_agreement.py [--targets rnn,lstm,gru,mamba,hawk,linear-rnn] [--rows NAME,NAME]
                                           [--at bottom|middle|top]

For each target that grows (backends/growth.py) and each row of the shared table (``lsrl/corpus``)
the target compiles: the model grown in every size it has (``PLANS``, free weights normal:0.02,
seed 1; new layers inserted at the bottom, in the middle or on top), run beside the original on
the row's runs; hawk, whose weights depend on the dtype, is compiled for each. Prints per row and
target the largest float64 difference in ulps of ``max(1, |output|)`` and the largest float32
difference, then the worst per target (docs/growth.md quotes them). One run; a measurement, not a
test.
"""

from __future__ import annotations

import argparse

import numpy as np
from lsrl.backends import get_target
from lsrl.backends.growth import current_sizes, grow_compiled, size_names
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

from lsrl.corpus import CASES
from lsrl.targets import compile_to, run_compiled

PLANS = {
    "rnn": {"hidden_size": 5, "num_layers": 2},
    "lstm": {"hidden_size": 4, "num_layers": 2},
    "gru": {"hidden_size": 4, "num_layers": 2},
    "mamba": {"d_model": 3, "d_inner": 5, "d_state": 2, "dt_rank": 2, "n_layer": 2},
    "hawk": {"hidden_size": 3, "lru_width": 8, "intermediate_size": 24, "num_hidden_layers": 2},
    "linear-rnn": {"state_size": 3, "num_blocks": 2},
}


def grown_pair(case, target: str, dtype: str, at: str) -> tuple:
    """The original and the grown model for ``dtype`` (compiled for it where the target's weights
    depend on it: hawk), the new layers at the bottom, the middle or the top (``at``)."""
    options = case.options(dtype=dtype) if get_target(target).dtype_specific else case.options()
    original = compile_to(case.program(), target, options)
    now = current_sizes(original)
    depth = now[size_names(target)[-1]]
    position = {"bottom": 0, "middle": depth // 2, "top": depth}[at]
    plan = {k: now[k] + v for k, v in PLANS[target].items()}
    return original, grow_compiled(original, plan, Initializer.parse("normal:0.02"), 1, position)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", default=",".join(PLANS))
    parser.add_argument("--rows", default="")
    parser.add_argument("--at", choices=("bottom", "middle", "top"), default="top", help="where new layers go")
    args = parser.parse_args()
    rows = [c for c in CASES if not args.rows or c.name in args.rows.split(",")]
    worst_ulps: dict[str, tuple[float, str]] = {}
    worst_float32: dict[str, float] = {}
    print("| row | target | float64 ulps | float32 difference |\n|---|---|---|---|")
    for case in rows:
        for target in args.targets.split(","):
            try:
                models = {dtype: grown_pair(case, target, dtype, args.at) for dtype in ("float64", "float32")}
            except LsrlError as e:
                print(f"| {case.name} | {target} | refused: {e.message.split(':')[0]} | |")
                continue
            ulps = f32 = 0.0
            for inputs, _ in case.references(case.program()):
                before, after = (run_compiled(m, inputs, "float64") for m in models["float64"])
                ulps = max(ulps, float((np.abs(after - before) / (np.maximum(1.0, np.abs(before)) * 2.0**-52)).max()))
                before, after = (run_compiled(m, inputs, "float32") for m in models["float32"])
                f32 = max(f32, float(np.abs(after - before).max()))
            print(f"| {case.name} | {target} | {ulps:.3g} | {f32:.3g} |", flush=True)
            worst_ulps[target] = max(worst_ulps.get(target, (-1.0, "")), (ulps, case.name))
            worst_float32[target] = max(worst_float32.get(target, 0.0), f32)
    for target, (ulps, name) in worst_ulps.items():
        print(f"worst {target}: float64 {ulps:.3g} ulps ({name}); float32 up to {worst_float32[target]:.3g}")


if __name__ == "__main__":
    main()
