"""Grow a compiled program and train it on a wider task, beside the same architecture from random
initialization (docs/growth.md). Runs on a CPU in a few minutes:

    python examples/grow_and_train.py [--steps 400] [--seed 0] [--png grow_and_train.png] [--init normal:0.02]

The program is examples/more_ones.lsrl (is the count of 1s larger than the count of 0s so far?),
compiled for the ``rnn`` target: a stock ``nn.RNN(nonlinearity="relu")`` and an ``nn.Linear``
readout. It solves the task on tokens 0 and 1. The wider task adds a token 2, "blank", which counts
as neither; the compiled program counts it wrong (as two 1s and minus one 0). The compiled model is
grown (``lsrl grow``: hidden size 4 -> 32, layers 2 -> 3) and trained on the wider task for a fixed
number of steps; beside it, the same modules from PyTorch's default initialization, with the same
data, optimizer and budget. The script checks that the grown model, before any training, gives the
compiled program's outputs on sequences of 0s and 1s, prints both loss curves and writes them to a
PNG where matplotlib is installed. ``--init`` draws the free weights of the growth (docs/growth.md
compares ``normal:0.02`` with the modules' own scale, ``uniform:0.177``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from lsrl.backends.elman import stock_modules
from lsrl.backends.growth import grow_compiled
from lsrl.ir.free_weights import Initializer

import lsrl

PROGRAM = Path(__file__).parent / "more_ones.lsrl"
HIDDEN, LAYERS = 32, 3
BATCH, LENGTH, LEARNING_RATE = 64, 24, 3e-3
BLANK = 2


def task(rng: np.random.Generator, batch: int, blanks: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences and their targets: 1 where more 1s than 0s have been seen so far, else 0."""
    tokens = rng.integers(0, 3 if blanks else 2, (batch, LENGTH))
    ones, zeros = np.cumsum(tokens == 1, axis=1), np.cumsum(tokens == 0, axis=1)
    inputs = torch.tensor(tokens[..., None], dtype=torch.float32)
    return inputs, torch.tensor((ones > zeros)[..., None], dtype=torch.float32)


def forward(modules: torch.nn.ModuleDict, inputs: torch.Tensor) -> torch.Tensor:
    return modules["readout"](modules["rnn"](inputs)[0])


def train(modules: torch.nn.ModuleDict, steps: int, seed: int, every: int) -> list[tuple[int, float, float]]:
    """Adam on the mean squared error for ``steps`` batches of the wider task; every ``every``
    steps the loss and accuracy (rounding the output) on a fixed held-out batch."""
    rng, held_out = np.random.default_rng(seed), task(np.random.default_rng(10_000 + seed), 1024, blanks=True)
    optimizer = torch.optim.Adam(modules.parameters(), lr=LEARNING_RATE)
    curve = []
    for step in range(steps + 1):
        if step % every == 0:
            with torch.no_grad():
                out = forward(modules, held_out[0])
                loss = torch.nn.functional.mse_loss(out, held_out[1]).item()
                accuracy = ((out > 0.5).float() == held_out[1]).float().mean().item()
            curve.append((step, loss, accuracy))
        if step == steps:
            break
        inputs, targets = task(rng, BATCH, blanks=True)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(forward(modules, inputs), targets).backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        optimizer.step()
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", default="grow_and_train.png")
    parser.add_argument("--init", default="normal:0.02",
                        help="the free weights' initializer (uniform:0.177 draws them as PyTorch's default for 32 cells)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    compiled = lsrl.compile_to(lsrl.compile_file(str(PROGRAM)), "rnn")
    grown = grow_compiled(compiled, {"hidden_size": HIDDEN, "num_layers": LAYERS}, Initializer.parse(args.init), args.seed)
    grown_modules = stock_modules(grown.config, grown.tensors, "float32")
    random_modules = torch.nn.ModuleDict({"rnn": torch.nn.RNN(**grown.config["rnn"]),
                                          "readout": torch.nn.Linear(**grown.config["readout"])})

    binary, _ = task(np.random.default_rng(1), 256, blanks=False)
    with torch.no_grad():
        at_step_0 = forward(grown_modules, binary).double().numpy()
    program = lsrl.run_compiled(compiled, binary.double().numpy(), "float64")
    keeps = bool(np.array_equal(at_step_0, program))
    print(f"grown model ({HIDDEN} hidden, {LAYERS} layers) at step 0 gives the compiled program's outputs on "
          f"256 sequences of 0s and 1s: {'yes' if keeps else 'NO'} (largest difference {np.abs(at_step_0 - program).max():g})")

    every = max(1, args.steps // 20)
    curves = {"grown from the compiled program": train(grown_modules, args.steps, args.seed, every),
              "random initialization": train(random_modules, args.steps, args.seed, every)}
    print(f"\nheld-out loss (MSE) and accuracy on the wider task (tokens 0, 1, 2), {args.steps} steps of Adam:")
    print(f"{'step':>6}  " + "  ".join(f"{name:>34}" for name in curves))
    for rows in zip(*curves.values()):
        print(f"{rows[0][0]:>6}  " + "  ".join(f"{loss:>22.5f} ({acc:6.1%})" for _, loss, acc in rows))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: no plot written")
        return
    for name, curve in curves.items():
        plt.plot([s for s, _, _ in curve], [l for _, l, _ in curve], label=name)
    plt.xlabel("training step")
    plt.ylabel("held-out MSE (tokens 0, 1, 2)")
    plt.yscale("log")
    plt.legend()
    plt.title("more_ones grown to a 32x3 ReLU RNN vs random init")
    plt.savefig(args.png, dpi=120)
    print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
