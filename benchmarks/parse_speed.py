"""Front-end speed: parse and elaboration time of examples/tok2tok.lsrl at seq_len 8.

    python3 benchmarks/parse_speed.py [--repeat N] [--seq-len N]

Parsing turns the source into the syntax tree; elaboration runs the compile-time part (the import
of lib/conditionals.lsrl included) and builds the verified graph through the builder. Each figure
is the best of several runs after a first run that builds lark's parser tables, which is timed on
its own. The Python builder's time for the same program is printed for scale.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

from lsrl import syntax
from lsrl.corpus.cases_lsrl import tok2tok
from lsrl.elaborate import Elaborator

PROGRAM = Path(__file__).resolve().parent.parent / "examples" / "tok2tok.lsrl"


def best_seconds(work: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=8)
    args = parser.parse_args()
    text = PROGRAM.read_text()
    params = {"seq_len": args.seq_len, "conditional": "mul"}

    start = time.perf_counter()
    module = syntax.parse(text, str(PROGRAM))
    first = time.perf_counter() - start

    parse = best_seconds(lambda: syntax.parse(text, str(PROGRAM)), args.repeat)
    elaborate = best_seconds(lambda: Elaborator(params).elaborate_module(module), args.repeat)
    builder = best_seconds(lambda: tok2tok(args.seq_len, "mul"), args.repeat)
    nodes = len(Elaborator(params).elaborate_module(module))

    lines = len(text.splitlines())
    print(f"tok2tok.lsrl, seq_len {args.seq_len}: {lines} lines, {nodes} graph nodes; best of {args.repeat} runs")
    print(f"  first parse (builds the parser) {first * 1e3:8.2f} ms")
    print(f"  parse                           {parse * 1e3:8.2f} ms")
    print(f"  elaborate                       {elaborate * 1e3:8.2f} ms")
    print(f"  parse + elaborate               {(parse + elaborate) * 1e3:8.2f} ms")
    print(f"  Python builder, same graph      {builder * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
