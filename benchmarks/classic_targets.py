"""Sizes and measured errors of the classic recurrent targets on every program of the test table.

    python3 benchmarks/classic_targets.py [--targets linear-rnn,rnn,lstm,gru] [--rows NAME,NAME]

For each target (those whose backend module is installed) and each row of the shared table
(``lsrl/corpus``), compiled with the row's input facts (``input_range``, ``integer_inputs``)
and the default ``--max-len`` and variant: the layers before the readout, the hidden width (the
widest layer), the parameter count of the target's modules, and the largest absolute error of
the outputs over the row's runs against the exact interpreter, in float32 and float64. A program
the target refuses shows the reason (without its details: ``lsrl compile`` prints them); a
float32 error the compiler warned about is marked "(w)".
Prints one Markdown table (docs/target-rnn.md quotes it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from lsrl.backends import TARGET_NAMES, get_target
from lsrl.ir.errors import LsrlError

from lsrl.corpus import CASES, Case
from lsrl.targets import compile_to, run_compiled

ROOT = Path(__file__).resolve().parent.parent

TARGETS = ("linear-rnn", "rnn", "lstm", "gru")


def available(target: str) -> bool:
    if target not in TARGET_NAMES:
        return False
    try:
        get_target(target)
    except ImportError:  # its backend module is not written (or not installed) yet
        return False
    return True


def measure(target: str, case: Case, runs: list[tuple[list[list[float]], np.ndarray]]) -> list[str]:
    """The table cells of one target on one row."""
    try:
        compiled = compile_to(case.program(), target, case.options())
    except LsrlError as e:
        # the reason alone: after the "cannot ... for TARGET:" lead, before the details and hints
        reason = e.message.split(": ", 1)[-1].split(" (")[0].split(";")[0]
        return ["refused: " + reason, "", "", "", ""]
    errors = []
    for dtype in ("float32", "float64"):
        worst = max(float(np.max(np.abs(run_compiled(compiled, x, dtype)[0] - want), initial=0.0)) for x, want in runs)
        warned = " (w)" if dtype == "float32" and compiled.warnings else ""
        errors.append(f"{worst:.1e}{warned}")
    figures = compiled.figures
    return [str(figures["layers"]), str(figures["hidden_size"]), str(figures["parameters"]), *errors]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument("--rows", help="comma-separated row names (default: every row)")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if available(t)]
    rows = [c for c in CASES if args.rows is None or c.name in args.rows.split(",")]
    header = ["program", "target", "layers", "hidden", "parameters", "max error float32", "max error float64"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for case in rows:
        runs = case.references()
        for target in targets:
            print("| " + " | ".join([case.name, target, *measure(target, case, runs)]) + " |", flush=True)
    skipped = [t for t in args.targets.split(",") if t not in targets]
    if skipped:
        print(f"\n(not installed: {', '.join(skipped)})")


if __name__ == "__main__":
    main()
