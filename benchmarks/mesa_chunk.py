"""Forward time of Mesa's readout (examples/mesa.lsrl's program, built here with a decay of 0.99 per
step and a number of solve steps) in the generated torch code, recurrent form
against Mesa's chunk form (docs/schedules.md: H accumulated by chunks and solved per step, never
written), with a direct solve and with conjugate-gradient steps; float32, batch 1, one torch thread.

    python3 benchmarks/mesa_chunk.py                          # keys 32, T in 256, 1024
    python3 benchmarks/mesa_chunk.py --keys 64 --lengths 4096 --chunk 64

Each figure is the best of ``--repeat`` runs after a warm-up; the ratio is recurrent / chunk.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from lsrl.backends import Options, torch_code
from lsrl.ir.graph import Graph

import lsrl
from lsrl.builder import solve


def mesa(keys: int, steps: int) -> Graph:
    """o = G^T (H + I)^-1 q over H_t = 0.99 H_{t-1} + k k^T, G_t = 0.99 G_{t-1} + k v^T (keys = values)."""
    p = lsrl.Program()
    x = p.input(3 * keys)
    k, v, q = x[0:keys], x[keys:2 * keys], x[2 * keys:]
    h = p.matrix_state(0.99, k, k)
    g = p.matrix_state(0.99, k, v)
    p.output(lsrl.read(g, solve(h, q, 1, steps)), name="o")
    return p.finish()


def seconds(net: torch.nn.Module, x: torch.Tensor, repeat: int) -> float:
    with torch.no_grad():
        net(x)  # warm-up
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            net(x)
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=32)
    parser.add_argument("--lengths", default="256,1024")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--cg-steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"Mesa readout, keys = values = {args.keys}, chunk {args.chunk}, float32, seconds per forward")
    print(f"{'solve':<14} {'T':>6} {'recurrent':>10} {'chunk':>10} {'ratio':>6}")
    for steps in (0, args.cg_steps):
        graph = mesa(args.keys, steps)
        nets = {form: torch_code.module(lsrl.compile_to(graph, "torch", Options(schedule=form, chunk=args.chunk)), "float32")
                for form in ("recurrent", "chunk")}
        for length in (int(v) for v in args.lengths.split(",")):
            x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, length, graph.input.dim)).astype(np.float32))
            times = {form: seconds(net, x, args.repeat) for form, net in nets.items()}
            label = "direct" if not steps else f"CG {steps} steps"
            print(f"{label:<14} {length:>6} {times['recurrent']:>10.4f} {times['chunk']:>10.4f} "
                  f"{times['recurrent'] / times['chunk']:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
