"""The error of the real layers of examples/layers/ against their independent references (the
cross-checks of tests/test_layers.py): the interpreter in float64, and the generated torch and jax
code in float64 and float32, as the largest absolute error over the largest absolute output.

    python benchmarks/layer_precision.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_layers as layers  # noqa: E402  (the references live with the tests)
from lsrl.ir.interpret import run  # noqa: E402

import lsrl  # noqa: E402


def main() -> None:
    patch = pytest.MonkeyPatch()
    patch.setattr(torch.Tensor, "float", lambda self, *args, **kwargs: self)  # float64 references
    print(f"{'layer':10} {'interpreter f64':>16} {'torch f64':>10} {'torch f32':>10} {'jax f64':>10} {'jax f32':>10}")
    rows = [(name, layers.program(name), layers.REFERENCES[name]) for name in layers.NAMES]
    rows.append((f"mesa CG {layers.MESA_STEPS}", layers.mesa_by_conjugate_gradient(),
                 lambda x: layers.mesa_reference(x, layers.MESA_STEPS)))
    for name, graph, reference in rows:
        x = layers.inputs(name.split()[0])  # the row's inputs, as the tests run them
        want = reference(x)
        figures = [layers.relative_error(run(graph, x), want)]
        for target in ("torch", "jax"):
            built = lsrl.compile_to(graph, target)
            figures += [layers.relative_error(lsrl.run_compiled(built, x, dtype), want) for dtype in ("float64", "float32")]
        print(f"{name:10} {figures[0]:16.1e} " + " ".join(f"{f:10.1e}" for f in figures[1:]))
    patch.undo()


if __name__ == "__main__":
    main()
