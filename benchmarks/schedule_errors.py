"""float32 error of each form (docs/schedules.md): the generated torch and jax code of every table
row with something to schedule and of the real layers (examples/layers), in the recurrent, chunk
and scan forms, against the exact outputs (the float64 interpreter where weights are irrational);
and a gated layer with decays between 1e-3 and 1e-2 per step.

    python3 benchmarks/schedule_errors.py

Each figure is the largest ``|y - y_exact| / max(1, |y_exact|)`` over the row's runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from lsrl.backends import Options, get_target
from lsrl.ir.graph import Label
from lsrl.ir.interpret import run
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import exact
from lsrl.ir.schedule import CHUNK, LOOPS, RECURRENT, SCAN
from lsrl.passes import lower
from lsrl.passes.schedule import schedule

from lsrl.corpus import CASES
from lsrl.load import compile_file
from lsrl.targets import compile_to, run_compiled

FORMS = ((RECURRENT, 64), (CHUNK, 16), (SCAN, 64))
LAYERS = Path(__file__).resolve().parents[1] / "examples" / "layers"


def worst(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)), initial=0.0))


def scheduled(case) -> bool:
    plan = schedule(lower(case.graph(), case.input_range), CHUNK)
    return any(p.kind != "state" or any(s.method in LOOPS for s in p.stages) for p in plan.layers)


def programs():
    """(name, graph, [(inputs, exact outputs)], options) of the rows and the real layers."""
    for case in CASES:
        if scheduled(case):
            yield case.name, case.program(), case.references(), lambda **o: case.options(**o)
    for name in ("gla", "deltanet", "mamba", "rglru", "mesa"):
        graph = compile_file(LAYERS / f"{name}.lsrl")
        x = np.random.default_rng(0).standard_normal((2, 64, graph.input.dim))
        yield f"layers/{name}", graph, [(x, run(graph, x))], lambda **o: Options(**o)


def small_decays() -> tuple[str, float, float]:
    """h_t = a_t h_{t-1} + b_t, a_t in [1e-3, 1e-2], 500 steps, float32 chunk (C = 64) and scan."""
    units = (UnitLabel(Label("h", 0)),)
    layer = Layer("gated", {"W": Matrix(1, 2, {(0, 1): exact(1)}), "b": (exact(0),), "W2": Matrix(1, 2, {(0, 0): exact(1)}),
                            "b2": (exact(0),), "init": (exact(1),)}, units)
    model = LayeredModel(2, [layer], [Label("x", 0), Label("x", 1)], [Label("h", 0)])
    rng = np.random.default_rng(3)
    x = np.stack([10 ** rng.uniform(-3, -2, (4, 500)), rng.uniform(0.5, 1.0, (4, 500))], axis=-1)
    want = model.run(x)
    torch_target = get_target("torch")
    errors = [worst(torch_target.run(torch_target.build(model, replace(Options(), plan=schedule(model, form, 64))), x,
                                     "float32"), want) for form in (CHUNK, SCAN)]
    return "gated, decays 1e-3..1e-2 (torch)", errors[0], errors[1]


def main() -> None:
    print(f"{'program':<24} {'target':<6} " + " ".join(f"{form:>10}" for form, _ in FORMS))
    for name, graph, references, options in programs():
        for target in ("torch", "jax"):
            errors = []
            for form, size in FORMS:
                compiled = compile_to(graph, target, options(schedule=form, chunk=size))
                errors.append(max(worst(run_compiled(compiled, x, "float32")[0 if np.ndim(x) == 2 else slice(None)], want)
                                  for x, want in references))
            print(f"{name:<24} {target:<6} " + " ".join(f"{e:10.1e}" for e in errors))
    what, chunk_error, scan_error = small_decays()
    print(f"\n{what}: chunk {chunk_error:.1e}, scan {scan_error:.1e}")


if __name__ == "__main__":
    main()
