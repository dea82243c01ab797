"""Tokens per second of the generated torch and jax code on LSRL's token-to-token program.

    python3 benchmarks/throughput.py [--device cpu|cuda] [--repeat N] [--threads N] [--seq-len 3] [--conditional mul]

The program (``tests.cases_lsrl.tok2tok``, seq_len 3, multiplicative conditionals by default) is
compiled for the ``torch`` and ``jax`` targets and run on random integer tokens 0..26, for
batches 1 and 64 and sequences of 153 tokens (the length of LSRL's country/capital prompt) and
4096. Each figure is the best of several runs after a warm-up (for jax, the warm-up compiles the
jitted ``forward``). Beside them, in the same run: the reference interpreter (``ir.interpret.run``,
float64) on the same tokens, and LSRL's own implementation, about 70 tokens/s on the 153-token
prompt.

Roofline: the same dense matrix products the model does (every layer's affine maps, W and for
gates W2, as ``[batch * time, d_in] x [d_in, width]``, in the same dtype and on the same device),
timed alone with torch, in turn with the forward. ``roofline`` is their time over the torch
forward's time: the fraction of the speed that the matrix products alone would allow.

The script runs unchanged on a GPU machine: torch uses cuda when it is available (or
``--device``); jax uses its default backend.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import jax
import numpy as np
import torch
import torch.nn.functional as F
from lsrl.backends.jax_code import functions
from lsrl.backends.torch_code import module
from lsrl.ir.interpret import run as interpret

from lsrl.corpus.cases_lsrl import tok2tok
from lsrl.targets import compile_to

LSRL_TOKENS_PER_SECOND = 70.0  # LSRL on the 153-token tok2tok prompt
SHAPES = [(1, 153), (64, 153), (1, 4096), (64, 4096)]  # (batch, sequence length)
DTYPES = ("float32", "float64")
VOCABULARY = 27  # tokens 0..26: letters A=1..Z=26 and 0


def best_seconds(*runs: Callable[[], object], repeat: int, budget: float = 10.0) -> list[float]:
    """For each run, the best of ``repeat`` timings after one warm-up (fewer once they took over
    ``budget`` seconds). Several runs are timed in turn, so a busy machine slows them alike."""
    for run in runs:
        run()
    best, spent = [float("inf")] * len(runs), 0.0
    for _ in range(repeat):
        for k, run in enumerate(runs):
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
            best[k], spent = min(best[k], seconds), spent + seconds
        if spent > budget:
            break
    return best


def torch_runner(compiled, dtype: str, device: str, tokens: np.ndarray) -> Callable[[], object]:
    net = module(compiled, dtype, device)
    x = torch.as_tensor(tokens, dtype=getattr(torch, dtype), device=device)

    def run() -> object:
        with torch.inference_mode():
            y = net(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return y

    return run


def jax_runner(compiled, dtype: str, tokens: np.ndarray) -> Callable[[], object]:
    model = functions(compiled, dtype)
    forward = jax.jit(model.forward)
    x = jax.device_put(tokens.astype(dtype))
    return lambda: forward(model.params, x).block_until_ready()


def roofline_runner(compiled, dtype: str, device: str, rows: int) -> Callable[[], object]:
    """The model's dense matrix products alone, as F.linear (the kernel the module calls):
    ``[rows, d_in] x [d_in, width]`` for each affine map of each layer."""
    generator = torch.Generator().manual_seed(0)
    to = {"dtype": getattr(torch, dtype), "device": device}
    products = []
    for i in range(len(compiled.config["layers"])):
        for name in ("W", "W2"):
            weight = compiled.tensors.get(f"layers.{i}.{name}")
            if weight is not None:
                x = torch.randn(rows, weight.shape[1], generator=generator, dtype=torch.float64)
                products.append((x.to(**to), torch.tensor(weight).to(**to)))

    def run() -> None:
        with torch.inference_mode():
            for x, weight in products:
                F.linear(x, weight)  # each result is freed at once, as the forward frees its layers'
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda if available)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure; the best is printed")
    parser.add_argument("--seq-len", type=int, default=3, help="tok2tok's key length")
    parser.add_argument("--conditional", default="mul", choices=("mul", "relu"), help="tok2tok's conditionals")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    graph = tok2tok(args.seq_len, args.conditional)
    compiled = {target: compile_to(graph, target) for target in ("torch", "jax")}
    figures = compiled["torch"].figures
    print(
        f"tok2tok[{args.seq_len}, {args.conditional}]: {figures['layers']} layers, max width {figures['max_width']}, "
        f"{figures['state_units']} state units, {figures['parameters']} weights, "
        f"{figures['sequential_loops']} loops over time"
    )
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__} on {args.device} ({threads} CPU thread{'s' if threads > 1 else ''}); "
        f"jax {jax.__version__} on {jax.devices()[0]}; interpreter numpy float64 on cpu"
    )
    print(
        f"{'backend':<12} {'dtype':<8} {'batch x len':>12} {'best ms':>10} {'tok/s':>14} "
        f"{'x LSRL':>10} {'x interp':>9} {'roofline':>9}"
    )
    rng = np.random.default_rng(0)
    for batch, length in SHAPES:
        tokens = rng.integers(0, VOCABULARY, size=(batch, length, 1)).astype(np.float64)
        count = batch * length

        def line(backend: str, dtype: str, seconds: float, interp_rate: float, roofline: str = "") -> None:
            rate = count / seconds
            print(
                f"{backend:<12} {dtype:<8} {f'{batch} x {length}':>12} {seconds * 1e3:10.2f} {rate:14,.0f} "
                f"{rate / LSRL_TOKENS_PER_SECOND:10,.0f} {rate / interp_rate:9,.1f} {roofline:>9}"
            )

        [interp_seconds] = best_seconds(lambda: interpret(graph, tokens), repeat=min(args.repeat, 3), budget=20.0)
        interp_rate = count / interp_seconds
        line("interpreter", "float64", interp_seconds, interp_rate)
        for dtype in DTYPES:
            seconds, matmuls = best_seconds(
                torch_runner(compiled["torch"], dtype, args.device, tokens),
                roofline_runner(compiled["torch"], dtype, args.device, count),
                repeat=args.repeat,
            )
            line("torch", dtype, seconds, interp_rate, f"{matmuls / seconds:.0%}")
        for dtype in DTYPES:
            [seconds] = best_seconds(jax_runner(compiled["jax"], dtype, tokens), repeat=args.repeat)
            line("jax (jit)", dtype, seconds, interp_rate)
    print(
        f"x LSRL: against LSRL's {LSRL_TOKENS_PER_SECOND:.0f} tokens/s; "
        "x interp: against the interpreter on the same tokens"
    )


if __name__ == "__main__":
    main()
