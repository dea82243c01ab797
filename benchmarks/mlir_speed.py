"""Tokens per second of the mlir target (IREE on the CPU) against the torch and jax targets, and
the mlir target's compile times.

    python3 benchmarks/mlir_speed.py [--repeat N] [--dtype float32|float64] [--width W] [--driver local-task|local-sync]

Two programs, compiled for ``mlir``, ``torch`` and ``jax`` and run in the same process on the same
inputs, for batches 1 and 64 and sequences of 153 and 4096 tokens:

- tok2tok (``examples/tok2tok.lsrl``, seq_len 3, multiplicative conditionals, as
  ``benchmarks/throughput.py`` runs it) on random integer tokens 0..26;
- a gated layer ``h_t = a_t * h_{t-1} + v_t`` of ``--width`` units (default 128) whose gates
  ``a_t`` and drives ``v_t`` are linear in a token of two numbers in [0, 1], read out by an affine
  layer of 4 units: the recurrence every target computes as a loop over time.

Each figure is the best of ``--repeat`` runs after a warm-up (jax's compiles the jitted forward);
the three targets are timed in turn, so a busy machine slows them alike. ``x jax`` and ``x torch``
are the mlir target's tokens/s over theirs. ``--driver``: IREE's runtime driver of the runner,
``local-task`` (its thread pool, the runner's default) or ``local-sync`` (the calling thread only,
which no thread that torch or XLA leaves spinning between the runs delays). Compile times, per program (float32): the passes to
the layered model, the layered model to the verified MLIR module's text (``module_source``), and
IREE's compile of that text for ``llvm-cpu`` (``compile_vmfb``); and what IREE makes of
``forward`` (``--compile-to=flow``): its dispatches and the ``scf.for`` loops left on IREE's host
side, each of whose rounds submits its dispatches again.
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from lsrl.backends import get_target
from lsrl.backends.codegen import import_generated
from lsrl.backends.mlir_code import (
    COMPILE_FLAGS,
    TARGET_BACKEND,
    compile_vmfb,
    module_source,
)
from lsrl.backends.mlir_spec import ModelSpec
from lsrl.backends.target import Options
from lsrl.ir.graph import Graph
from throughput import best_seconds, jax_runner, torch_runner

import lsrl
from lsrl.load import compile_file
from lsrl.targets import compile_to, lower_for_target

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHAPES = [(1, 153), (64, 153), (1, 4096), (64, 4096)]  # (batch, sequence length)
VOCABULARY = 27  # tok2tok's tokens 0..26
READOUT = 4  # units of the gated program's readout


def gated_layer(width: int) -> Graph:
    """A gated layer of ``width`` units on a token (x0, x1) in [0, 1]^2: gate ``c_i x0`` (c_i in
    (0, 1)), drive ``d_i x1 + e_i``, then an affine readout of ``READOUT`` units."""
    rng = np.random.default_rng(0)
    p = lsrl.Program()
    x = p.input(2)
    gates = [[Fraction(int(k), 64), 0] for k in rng.integers(1, 64, width)]
    drives = [[0, int(d)] for d in rng.integers(-4, 5, width)]
    biases = [int(e) for e in rng.integers(-2, 3, width)]
    h = p.state(0, lambda h: lsrl.linear(x, gates) * h + lsrl.linear(x, drives, biases), dim=width, name="h")
    readout = [[int(w) for w in row] for row in rng.integers(-1, 2, (READOUT, width))]
    p.output(lsrl.linear(h, readout), name="y")
    return p.finish()


def inputs(program: str, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    if program == "tok2tok":
        return rng.integers(0, VOCABULARY, size=(batch, length, 1)).astype(np.float64)
    return rng.integers(0, 9, size=(batch, length, 2)) / 8


def compile_times(graph, options: Options) -> tuple[float, float, float, str]:
    """Seconds of the passes, of building the module's text and of IREE's compile, and the text."""
    start = time.perf_counter()
    model, _, options = lower_for_target(graph, get_target("mlir"), options)
    lowered = time.perf_counter()
    source = module_source(ModelSpec.of_model(model, options.plan), options.dtype)
    built = time.perf_counter()
    compile_vmfb(source + "\n")  # a text of its own: not a compile this process has cached
    return lowered - start, built - lowered, time.perf_counter() - built, source


def forward_dispatches(source: str) -> tuple[int, int]:
    """The dispatches of ``forward`` and its loops on IREE's host side, in IREE's flow-level module."""
    import iree.compiler

    flow = iree.compiler.compile_str(source, target_backends=[TARGET_BACKEND], extra_args=[*COMPILE_FLAGS, "--compile-to=flow"])
    text = flow.decode() if isinstance(flow, bytes) else flow
    forward = text[text.index("util.func public @forward"):]
    forward = forward[:forward.index("util.func public @step")] if "util.func public @step" in forward else forward
    return forward.count("flow.dispatch @"), forward.count("scf.for ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure; the best is printed")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--width", type=int, default=128, help="units of the gated layer")
    parser.add_argument("--driver", default="local-task", choices=("local-task", "local-sync"), help="IREE's runtime driver")
    args = parser.parse_args()

    import jax
    import torch
    from iree.compiler.version import VERSION

    programs = {
        "tok2tok": (compile_file(EXAMPLES / "tok2tok.lsrl", {"seq_len": 3, "conditional": "mul"}), Options()),
        f"gated[{args.width}]": (gated_layer(args.width), Options(input_range=(0, 1))),
    }
    print(f"IREE {VERSION} (llvm-cpu, {args.driver}), torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"jax {jax.__version__} on {jax.devices()[0]}; {args.dtype}")
    for name, (graph, options) in programs.items():
        passes, module, iree, source = compile_times(graph, options)
        dispatches, host_loops = forward_dispatches(source)
        print(f"{name}: compile seconds: passes {passes:.2f}, MLIR module {module:.2f}, IREE {iree:.2f}; "
              f"forward: {dispatches} dispatches, {host_loops} loops on IREE's host side")
    print(f"{'program':<12} {'batch x len':>12} {'mlir tok/s':>12} {'torch tok/s':>12} {'jax tok/s':>12} "
          f"{'x torch':>8} {'x jax':>8}")
    rng = np.random.default_rng(0)
    for name, (graph, options) in programs.items():
        compiled = {target: compile_to(graph, target, options) for target in ("mlir", "torch", "jax")}
        model = import_generated(compiled["mlir"].files["model.py"]).Model(compiled["mlir"].files["model.vmfb"], args.dtype,
                                                                        args.driver)
        for batch, length in SHAPES:
            tokens = inputs(name.split("[")[0], batch, length, rng)
            seconds = best_seconds(
                lambda: model.forward(tokens),
                torch_runner(compiled["torch"], args.dtype, "cpu", tokens),
                jax_runner(compiled["jax"], args.dtype, tokens),
                repeat=args.repeat,
            )
            mlir, torch_rate, jax_rate = (batch * length / s for s in seconds)
            print(f"{name:<12} {f'{batch} x {length}':>12} {mlir:12,.0f} {torch_rate:12,.0f} {jax_rate:12,.0f} "
                  f"{mlir / torch_rate:8.2f} {mlir / jax_rate:8.2f}")


if __name__ == "__main__":
    main()
