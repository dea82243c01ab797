"""Float32 on every shared-table row and every compiled target: the verdict, the stated bound, the
measured error and the largest weight.

    python3 benchmarks/float32_error.py [--targets torch,rnn] [--rows dyck1,gates] [--dtype float64] [--json FILE]

For each row of the shared table (lsrl/corpus) and each target of ``backends.TARGET_NAMES`` that
imports here, the row is compiled with what it states about its inputs and run on all its input
sequences in the dtype (float32 by default). Per row and target it prints:

- the verdict of the compiler (``backends.verdict``): ``exact`` (stated bound 0), ``bounded`` (the
  bound proves every output right), ``unproven`` (the compiler warns), or ``refused``;
- the largest stated bound over the outputs, and the largest measured error against the exact
  interpreter (the float64 one for rows with irrational weights), over every step and output;
- ``outside``: a run outside its stated bound (never expected: it would be a bug of the analysis);
- the largest weight magnitude among the compiled tensors.

The summary counts the verdicts per target. ``--json`` also writes every figure to a file, so two
versions of the compiler can be compared.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
from lsrl.backends import DTYPES, TARGET_NAMES, get_target
from lsrl.backends.verdict import output_bounds
from lsrl.ir.errors import LsrlError

from lsrl.corpus import CASES
from lsrl.targets import compile_to, run_compiled


def available_targets(names: list[str]) -> list[str]:
    usable = []
    for name in names:
        try:
            get_target(name)
        except ImportError as e:
            print(f"{name}: not measured, cannot import it here ({e})")
        else:
            usable.append(name)
    return usable


def measure(case, target: str, dtype: str) -> dict:
    graph = case.program()
    try:
        compiled = compile_to(graph, target, case.options())
    except LsrlError:
        return {"verdict": "refused"}
    bounds = np.array(output_bounds(get_target(target), compiled, dtype, compiled.config["d_out"]))
    error = 0.0
    outside = False
    for inputs, want in case.references(graph):
        difference = np.abs(run_compiled(compiled, inputs, dtype)[0] - want)
        error = max(error, float(np.max(difference, initial=0.0)))
        outside |= bool(np.any(difference > bounds + 2.0**-52 * np.maximum(1.0, np.abs(want))))
    return {
        "verdict": compiled.config["precision"][dtype],
        "bound": float(np.max(bounds, initial=0.0)),
        "error": error,
        "outside": outside,
        "max_weight": max((float(np.max(np.abs(t))) for t in compiled.tensors.values() if t.size), default=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGET_NAMES))
    parser.add_argument("--rows", help="comma-separated row names (default: every row)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    args = parser.parse_args()
    targets = available_targets(args.targets.split(","))
    rows = [c for c in CASES if args.rows is None or c.name in args.rows.split(",")]
    figures: dict[str, dict[str, dict]] = {}
    print(f"{'row':24s} {'target':10s} {'verdict':9s} {'bound':>9s} {'error':>9s} {'max weight':>10s}")
    for case in rows:
        for target in targets:
            f = measure(case, target, args.dtype)
            figures.setdefault(case.name, {})[target] = f
            if f["verdict"] == "refused":
                print(f"{case.name:24s} {target:10s} refused")
                continue
            bound = "inf" if math.isinf(f["bound"]) else f"{f['bound']:.2g}"
            print(f"{case.name:24s} {target:10s} {f['verdict']:9s} {bound:>9s} {f['error']:9.2g} "
                  f"{f['max_weight']:10.3g}{'  OUTSIDE ITS BOUND' if f['outside'] else ''}")
    print(f"\n{args.dtype} verdicts per target (rows: {len(rows)})")
    for target in targets:
        counts: dict[str, int] = {}
        for per_target in figures.values():
            counts[per_target[target]["verdict"]] = counts.get(per_target[target]["verdict"], 0) + 1
        print(f"  {target:10s} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    outside = [f"{row}/{t}" for row, per_target in figures.items() for t, f in per_target.items() if f.get("outside")]
    print(f"runs outside their stated bound: {', '.join(outside) if outside else 'none'}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=1)


if __name__ == "__main__":
    main()
