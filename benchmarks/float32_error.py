"""Float32 and float64 error of every shared-table row on every compiled target, and the warnings.

    python3 benchmarks/float32_error.py [--targets torch,jax] [--rows gates,dyck1] [--markdown]

For each row of the shared table (lsrl/corpus) and each target of ``backends.TARGET_NAMES``
that imports here, the row is compiled with what it states about its inputs and run on all its
input sequences in float32 and in float64. The error is measured against the exact interpreter
(the float64 one for rows with irrational weights) over every step and output unit: the largest
absolute error, and the largest error relative to max(1, |exact|), the measure of
tests/test_targets.py. A target that refuses the row says "refused"; one that cannot be imported
here (its packages missing) is left out. Two more columns: the numpy float32 run of the layered
model from tests/test_precision.py (no target involved), and whether the compiler warns
(``passes.precision.float32_warnings``), as ``lsrl.compile_to`` calls it today (nothing stated
about the inputs: "default") and with the row's stated input range and integrality ("stated").

The summary lists, per row, the worst float32 error over the targets, every target (and the numpy
run) whose float32 error exceeds the table's 1e-3, and the number of warnings. docs/precision.md
quotes the figures.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lsrl.backends import DTYPES, TARGET_NAMES, Options, get_target
from lsrl.ir.errors import LsrlError
from lsrl.passes import lower
from lsrl.passes.precision import float32_warnings

from lsrl.corpus import CASES, Case
from lsrl.targets import compile_to, run_compiled

FLOAT32_RTOL = 1e-3  # the float32 tolerance of tests/test_targets.py

ROOT = Path(__file__).resolve().parent.parent

SIMULATION = "numpy f32"


@dataclass
class Error:
    """The largest absolute error, and the largest relative to max(1, |exact|)."""

    absolute: float = 0.0
    relative: float = 0.0

    def include(self, got: np.ndarray, want: np.ndarray) -> None:
        difference = np.abs(got - want)
        self.absolute = max(self.absolute, float(np.max(difference, initial=0.0)))
        self.relative = max(self.relative, float(np.max(difference / np.maximum(1.0, np.abs(want)), initial=0.0)))


def available_targets(names: list[str]) -> list[str]:
    usable = []
    for name in names:
        try:
            get_target(name)
        except ImportError as e:
            print(f"{name}: not measured, cannot import it here ({e})", file=sys.stderr)
            continue
        usable.append(name)
    return usable


def measure_target(case: Case, target: str, runs: list) -> dict[str, Error] | str:
    """Error per dtype, or why there is none."""
    try:
        compiled = compile_to(case.graph(), target, Options(case.input_range, case.integer_inputs))
    except LsrlError:
        return "refused"
    errors = {dtype: Error() for dtype in DTYPES}
    for floats, want in runs:
        for dtype in DTYPES:
            errors[dtype].include(run_compiled(compiled, floats, dtype)[0], want)
    return errors


def measure_simulation(case: Case, runs: list) -> Error:
    model = lower(case.graph(), case.input_range)
    error = Error()
    for floats, want in runs:
        error.include(model.run_float32(floats), want)
    return error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", help="comma-separated targets (default: every target that imports)")
    parser.add_argument("--rows", help="comma-separated table rows (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args(argv)
    requested = args.targets.split(",") if args.targets else list(TARGET_NAMES)
    unknown = sorted(set(requested) - set(TARGET_NAMES))
    if unknown:
        parser.error(f"unknown targets {', '.join(unknown)} (targets: {', '.join(TARGET_NAMES)})")
    targets = available_targets(requested)
    rows = [c for c in CASES if not args.rows or c.name in args.rows.split(",")]

    bar = "| " if args.markdown else ""
    sep = " | " if args.markdown else "  "
    header = ["row", "target", "f32 max abs", "f32 max rel", "f64 max abs", "f64 max rel"]
    widths = [24, 10, 11, 11, 11, 11]

    def line(cells: list[str], sizes: list[int]) -> str:
        text = sep.join(c.ljust(w) for c, w in zip(cells, sizes))
        return f"{bar}{text}{' |' if args.markdown else ''}"

    print(line(header, widths))
    if args.markdown:
        print(line(["---"] * len(header), widths))
    summary = []
    for case in rows:
        runs = case.references()
        worst, failing = ("", -1.0), []
        for target in targets:
            result = measure_target(case, target, runs)
            if isinstance(result, str):
                print(line([case.name, target, result, "", "", ""], widths))
                continue
            f32, f64 = result["float32"], result["float64"]
            figures = [f"{e:.3g}" for e in (f32.absolute, f32.relative, f64.absolute, f64.relative)]
            print(line([case.name, target, *figures], widths))
            worst = max(worst, (target, f32.relative), key=lambda item: item[1])
            if f32.relative > FLOAT32_RTOL:
                failing.append(target)
        simulated = measure_simulation(case, runs)
        if simulated.relative > FLOAT32_RTOL:
            failing.append(SIMULATION)
        print(line([case.name, SIMULATION, f"{simulated.absolute:.3g}", f"{simulated.relative:.3g}", "", ""], widths))
        graph = case.graph()
        default = len(float32_warnings(graph))
        stated = len(float32_warnings(graph, case.input_range, case.integer_inputs))
        summary.append((case.name, worst, simulated.relative, failing, default, stated))

    print()
    header = ["row", "worst f32 rel (target)", f"{SIMULATION} rel", "over 1e-3 in f32", "warnings default", "warnings stated"]
    widths = [24, 24, 13, 48, 16, 15]
    print(line(header, widths))
    if args.markdown:
        print(line(["---"] * len(header), widths))
    for name, (target, relative), simulated, failing, default, stated in summary:
        worst_text = f"{relative:.3g} ({target})" if target else "-"
        print(line([name, worst_text, f"{simulated:.3g}", ", ".join(failing) or "-", str(default), str(stated)], widths))


if __name__ == "__main__":
    main()
