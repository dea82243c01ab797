"""The --format hf checkpoints of the integer token rows (docs/target-hf.md, "Measurements").

Per row and target: the checkpoint's parameters and size on disk, the stated logit margin floor
and the smallest margin measured over the row's sequences, whether the argmax equals the exact
interpreter's outputs in float32 and float64, and the seconds to load the checkpoint with
``from_pretrained`` and run the row's sequences through transformers, next to the seconds the
mamba/hawk target's own model takes on them (``lsrl run --backend TARGET``'s path). Prints a
markdown table. Run from the repository root:

    python3 benchmarks/hf_checkpoints.py [--target mamba|hawk ...] [--rows NAME ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
from lsrl.backends import hf
from lsrl.ir.interpret import run as interpret

import lsrl
from lsrl.corpus.token_rows import ROWS


def measure(row, target: str) -> list[str]:
    graph = row.graph()
    compiled = lsrl.compile_to(graph, target, row.options())
    own = lsrl.compile_to(graph, target, row.options(format=None))  # the target's own stack
    runs = row.sequences()
    want = [interpret(graph, [[v] for v in r], exact=True)[0][:, 0].astype(int) for r in runs]
    with tempfile.TemporaryDirectory() as directory:
        compiled.write(directory)
        size = sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))
        margin, agree, hf_seconds = float("inf"), [], []
        for dtype in ("float32", "float64"):
            start = time.perf_counter()
            model = hf.load(directory, dtype)
            with torch.no_grad():
                results = [model(torch.tensor([r]), use_cache=False).logits[0].double().numpy() for r in runs]
            hf_seconds.append(time.perf_counter() - start)
            agree.append(all((logits.argmax(-1) == w).all() for logits, w in zip(results, want)))
            margin = min([margin, *(float(hf.margins(logits).min()) for logits in results)])
    start = time.perf_counter()
    for r in runs:
        lsrl.run_compiled(own, [[v] for v in r], "float32")
    own_seconds = time.perf_counter() - start
    return [row.key, target, str(compiled.figures["parameters"]), f"{size / 1024:.0f}",
             f"{compiled.config['logit_margin_floor']:.3g}", f"{margin:.3g}",
             "yes" if agree[0] else "NO", "yes" if agree[1] else "NO",
             f"{hf_seconds[0]:.2f}", f"{hf_seconds[1]:.2f}", f"{own_seconds:.2f}", str(own.figures["parameters"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", nargs="*", default=["mamba", "hawk"])
    parser.add_argument("--rows", nargs="*", help="row keys (default: all)")
    args = parser.parse_args()
    print("| row | target | params | KiB | margin floor | min margin | f32 | f64 | hf s f32 | hf s f64 | own s f32 | own params |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for target in args.target:
        for row in ROWS:
            if args.rows and row.key not in args.rows and row.name not in args.rows:
                continue
            print("| " + " | ".join(measure(row, target)) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
