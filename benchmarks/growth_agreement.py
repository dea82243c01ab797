"""How closely grown compiled models agree with the originals, on every program of the test table.

    python3 benchmarks/growth_agreement.py [--targets rnn,lstm,gru,mamba] [--rows NAME,NAME]

For each target that grows (backends/growth.py) and each row of the shared table (``lsrl/corpus``)
the target compiles: the model grown in every size it has (``PLANS``, free weights normal:0.02,
seed 1), run beside the original on the row's runs. Prints per row and target the largest float64
difference in ulps of ``max(1, |output|)`` and the largest float32 difference, then the worst per
target (docs/growth.md quotes them). One run; a measurement, not a test.
"""

from __future__ import annotations

import argparse

import numpy as np
from lsrl.backends.growth import current_sizes, grow_compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

from lsrl.corpus import CASES
from lsrl.targets import compile_to, run_compiled

PLANS = {
    "rnn": {"hidden_size": 5, "num_layers": 2},
    "lstm": {"hidden_size": 4, "num_layers": 2},
    "gru": {"hidden_size": 4, "num_layers": 2},
    "mamba": {"d_model": 3, "d_inner": 5, "d_state": 2, "dt_rank": 2, "n_layer": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", default=",".join(PLANS))
    parser.add_argument("--rows", default="")
    args = parser.parse_args()
    rows = [c for c in CASES if not args.rows or c.name in args.rows.split(",")]
    worst_ulps: dict[str, tuple[float, str]] = {}
    worst_float32: dict[str, float] = {}
    print("| row | target | float64 ulps | float32 difference |\n|---|---|---|---|")
    for case in rows:
        for target in args.targets.split(","):
            try:
                original = compile_to(case.program(), target, case.options())
                now = current_sizes(original)
                grown = grow_compiled(original, {k: now[k] + v for k, v in PLANS[target].items()},
                                      Initializer.parse("normal:0.02"), 1)
            except LsrlError as e:
                print(f"| {case.name} | {target} | refused: {e.message.split(':')[0]} | |")
                continue
            ulps = f32 = 0.0
            for inputs, _ in case.references(case.program()):
                before, after = (run_compiled(m, inputs, "float64") for m in (original, grown))
                ulps = max(ulps, float((np.abs(after - before) / (np.maximum(1.0, np.abs(before)) * 2.0**-52)).max()))
                before, after = (run_compiled(m, inputs, "float32") for m in (original, grown))
                f32 = max(f32, float(np.abs(after - before).max()))
            print(f"| {case.name} | {target} | {ulps:.3g} | {f32:.3g} |", flush=True)
            worst_ulps[target] = max(worst_ulps.get(target, (-1.0, "")), (ulps, case.name))
            worst_float32[target] = max(worst_float32.get(target, 0.0), f32)
    for target, (ulps, name) in worst_ulps.items():
        print(f"worst {target}: float64 {ulps:.3g} ulps ({name}); float32 up to {worst_float32[target]:.3g}")


if __name__ == "__main__":
    main()
