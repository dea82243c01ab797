"""Forward time of the generated torch and jax code of matrix-state layers against hand-written
loops of the same recurrences, in one run, with the ratios.

    python benchmarks/gated_layers.py [--batch 4] [--heads 4] [--keys 64] [--steps 2048] [--threads N]
                                      [--repeat 1] [--clock wall|cpu]

Two layers, each the recurrence alone, its per-token operands the program's input (so no
projection is timed on either side): GLA (``S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T``,
``o_t = S_t^T q_t / sqrt(dk)`` per head, inputs q, k, v, g) and DeltaNet (the delta rule with
``beta_t``, ``o_t = S_t^T q_t / sqrt(dk)``, inputs q, k, v, beta). The programs are built with the
builder and compiled with ``lsrl.compile_to``; the generated ``model.py`` is imported and run in
float32 on the CPU (torch's ``forward``, jax's jitted ``forward``). The hand-written loops:
flash-linear-attention's naive recurrences for torch (``naive_recurrent_gla``,
``delta_rule_recurrence``, loaded by file path: fla's package imports triton), and a
``jax.lax.scan`` written here for jax. Each figure is the best of ``--repeat`` runs after a
warm-up (which, for jax, compiles), the generated and the hand-written runs alternated; ``--clock
cpu`` times the process's CPU time instead of the wall clock (steadier where other jobs share the
cores). Goal: generated / hand-written <= 1.2.
"""

from __future__ import annotations

import argparse
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch
from layer_programs import (
    CLOCKS,
    fla_naive,
    jax_loop,
    recurrence_input,
    recurrence_program,
    split,
)
from lsrl.backends.jax_code import functions
from lsrl.backends.torch_code import module

from lsrl.targets import compile_to


def best_times(ours: Callable[[], object], theirs: Callable[[], object], repeat: int,
               clock: Callable[[], float]) -> tuple[float, float]:
    """The best of ``repeat`` runs of each after a warm-up (jax: compiles), the two alternated so
    that both see the same load of a shared machine."""
    ours(), theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for call, spent in zip((ours, theirs), times):
            start = clock()
            call()
            spent.append(clock() - start)
    return min(times[0]), min(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--keys", type=int, default=64, help="dk = dv")
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="wall time, or the process's CPU time (steadier where other jobs share the cores)")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    B, H, K, T = args.batch, args.heads, args.keys, args.steps
    rng = np.random.default_rng(0)
    print(f"batch {B}, heads {H}, dk = dv = {K}, {T} steps, float32, torch threads {torch.get_num_threads()}, "
          f"{args.clock} time")
    print(f"{'layer':9} {'target':6} {'generated s':>12} {'hand-written s':>15} {'ratio':>6}")
    for kind in ("gla", "deltanet"):
        graph = recurrence_program(kind, H, K)
        x = recurrence_input(kind, B, T, H, K, rng)
        q, k, v, g = (torch.from_numpy(a) for a in split(x, kind, H, K))

        net = module(compile_to(graph, "torch"), "float32")
        xt = torch.from_numpy(x)
        with torch.no_grad():
            if kind == "gla":
                naive = fla_naive("gla").naive_recurrent_gla
                ours, theirs = best_times(lambda: net(xt), lambda: naive(q, k, v, g), args.repeat, clock)
            else:
                naive = fla_naive("delta_rule").delta_rule_recurrence
                heads_first = [a.transpose(1, 2).contiguous() for a in (q, k, v, g)]
                ours, theirs = best_times(lambda: net(xt), lambda: naive(*heads_first), args.repeat, clock)
        print(f"{kind:9} {'torch':6} {ours:12.3f} {theirs:15.3f} {ours / theirs:6.2f}")

        model = functions(compile_to(graph, "jax"), "float32")
        forward = jax.jit(model.forward)
        xj = jnp.asarray(x)
        loop = jax_loop(kind, K)
        qj, kj, vj, gj = (jnp.asarray(a) for a in split(x, kind, H, K))
        ours, theirs = best_times(lambda: forward(model.params, xj).block_until_ready(),
                                  lambda: loop(qj, kj, vj, gj).block_until_ready(), args.repeat, clock)
        print(f"{kind:9} {'jax':6} {ours:12.3f} {theirs:15.3f} {ours / theirs:6.2f}")


if __name__ == "__main__":
    main()
