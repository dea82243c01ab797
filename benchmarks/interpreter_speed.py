"""Tokens per second of the reference interpreter (ir.interpret.run) on LSRL's two programs.

    python3 benchmarks/interpreter_speed.py [--repeat N]

The token-to-token lookup (seq_len 3) runs on the 153-token country/capital prompt, in its
multiplicative and ReLU variants, exactly and in float64 (one sequence, and float64 also a batch of
64); the continuous approximator (d_in 2, d_out 1) runs exactly on a 37-token prompt (a 6 x 6 grid).
Each figure is the best of several runs. For scale, it is set against LSRL's own implementation:
about 70 tokens/s numerically on the 153-token prompt, and 17 s symbolically (exact) for the 37
tokens of the continuous program.
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

from lsrl.ir.graph import Graph
from lsrl.ir.interpret import run

from lsrl.corpus.cases_lsrl import (
    continuous_prompt,
    continuous_ua,
    country_capitals,
    letters,
    tok2tok,
    tok2tok_prompt,
)

# LSRL's figures: (label, tokens/s)
LSRL_NUMERIC = ("LSRL numeric", 70.0)  # the 153-token tok2tok prompt
LSRL_SYMBOLIC = ("LSRL symbolic", 37 / 17.0)  # the 37-token continuous prompt took 17 s
BATCH = 64


def best_seconds(graph: Graph, inputs: object, exact: bool, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run(graph, inputs, exact=exact)
        best = min(best, time.perf_counter() - start)
    return best


def report(what: str, graph: Graph, inputs: list, exact: bool, repeat: int, reference: tuple[str, float]) -> None:
    """One line: tokens (batch x length), best time, tokens/s and the ratio to one of LSRL's figures."""
    batch, length = len(inputs), len(inputs[0])
    if not exact:
        inputs = [[[float(v) for v in tok] for tok in seq] for seq in inputs]
    seconds = best_seconds(graph, inputs, exact, repeat)
    rate = batch * length / seconds
    mode = "exact" if exact else "float64"
    print(
        f"{what:<34} {mode:<8} {batch:>3} x {length:<4} {seconds * 1e3:9.2f} ms "
        f"{rate:12,.0f} tok/s {rate / reference[1]:9,.1f}x {reference[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the best is printed")
    args = parser.parse_args()

    table = country_capitals()
    prompts = [[[t] for t in tok2tok_prompt(key, table)] for key in table]
    query = [[t] for t in tok2tok_prompt(letters("CAN"), table)]
    batch = [prompts[i % len(prompts)] for i in range(BATCH)]
    x = [Fraction(1, 3), Fraction(5, 7)]
    cells = [continuous_prompt(x, 2, 1, 6)]

    print(f"{'program (graph nodes)':<34} {'mode':<8} {'tokens':>10} {'best':>12} {'rate':>18}  ratio")
    for conditional in ("mul", "relu"):
        graph = tok2tok(3, conditional)
        what = f"tok2tok[3, {conditional}] ({len(graph)} nodes)"
        report(what, graph, [query], True, args.repeat, LSRL_NUMERIC)
        report(what, graph, [query], False, args.repeat, LSRL_NUMERIC)
        report(what, graph, batch, False, args.repeat, LSRL_NUMERIC)
    for conditional in ("relu", "mul"):
        graph = continuous_ua(2, 1, conditional)
        what = f"continuous[2x1, {conditional}] ({len(graph)} nodes)"
        report(what, graph, cells, True, args.repeat, LSRL_SYMBOLIC)
    print(
        f"{LSRL_NUMERIC[0]}: {LSRL_NUMERIC[1]:.0f} tok/s (tok2tok, 153 tokens); "
        f"{LSRL_SYMBOLIC[0]}: {LSRL_SYMBOLIC[1]:.2f} tok/s (continuous, 37 tokens in 17 s)"
    )


if __name__ == "__main__":
    main()
