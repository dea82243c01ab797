"""Largest relative error of the triton target's kernels on the real layers of examples/layers
(GLA, DeltaNet, Mamba, Mesa; Mesa also by 3 conjugate-gradient steps), recurrent and chunked (C = 4), float64 and float32, against the
independent references of tests/test_layers.py (fla's naive recurrences, transformers' MambaMixer)
run in float64 with their float32 casts made no-ops.

    python3 benchmarks/triton_layer_errors.py     # without a GPU: Triton's interpreter, about a minute
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when triton is first imported
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the references live in tests/

import torch  # noqa: E402
from lsrl.backends import Options  # noqa: E402

import lsrl  # noqa: E402
from tests.test_layers import (  # noqa: E402
    MESA_STEPS,
    REFERENCES,
    inputs,
    mesa_by_conjugate_gradient,
    mesa_reference,
    program,
    relative_error,
)


def main() -> None:
    torch.Tensor.float = lambda self, *args, **kwargs: self  # the references' float32 casts as no-ops
    print("layer     form       float64   float32   (largest error / largest |output|)")
    rows = [(name, program(name), REFERENCES[name]) for name in ("gla", "deltanet", "mamba", "mesa")]
    rows.append((f"mesa CG {MESA_STEPS}", mesa_by_conjugate_gradient(), lambda x: mesa_reference(x, MESA_STEPS)))
    for name, graph, reference in rows:
        x = inputs(name.split()[0])
        want = reference(x)
        for schedule in ("recurrent", "chunk"):
            built = lsrl.compile_to(graph, "triton", Options(schedule=schedule, chunk=4))
            errors = [relative_error(lsrl.run_compiled(built, x, dtype), want) for dtype in ("float64", "float32")]
            print(f"{name:10s} {schedule:9s} {errors[0]:9.1e} {errors[1]:9.1e}", flush=True)


if __name__ == "__main__":
    main()
