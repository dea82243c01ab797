"""Peak memory of the forms of matrix and delta heads (docs/schedules.md): the scan form forms
every step's state of a segment, the recurrent and chunk forms only the chunks' start states.

    python3 benchmarks/scan_memory.py                    # T in 256, 1024
    python3 benchmarks/scan_memory.py --lengths 4096 --layers gla

The GLA- and DeltaNet-shaped programs of benchmarks/schedules.py (benchmarks/layer_programs.py:
batch 4, 4 heads, dk = dv = 64, reading q^T S), float32, the whole generated torch and jax forward,
each form in a fresh process. torch: after a warm-up, a thread samples the process's resident
memory, and the figure is its peak during one forward above what it was just before; jax: XLA's
own account of the compiled forward (its temporaries and outputs). Beside it, the size of every
step's state of every head (T * batch * heads * dk * dv numbers), which an unsegmented scan
would keep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
BATCH, HEADS, KEYS = 4, 4, 64


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_during(run) -> int:
    """The peak resident memory while ``run()`` runs, above the resident memory before it."""
    before, peak, done = resident(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run()
    done.set()
    sampler.join()
    return max(peak[0], resident()) - before


def measure(layer: str, length: int, target: str, form: str, chunk: int) -> int:
    """In this process: the peak memory of one whole generated forward of the layer's program in ``form``."""
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from layer_programs import recurrence_input, recurrence_program
    from lsrl.backends import Options

    from lsrl.targets import compile_to

    compiled = compile_to(recurrence_program(layer, HEADS, KEYS), target, Options(schedule=form, chunk=chunk))
    x = recurrence_input(layer, BATCH, length, HEADS, KEYS, np.random.default_rng(0))
    if target == "jax":
        import jax
        from lsrl.backends.jax_code import functions

        model = functions(compiled, "float32")
        memory = jax.jit(model.forward).lower(model.params, x).compile().memory_analysis()
        return memory.temp_size_in_bytes + memory.output_size_in_bytes  # XLA plans every buffer: its account is exact
    import torch
    from lsrl.backends.torch_code import module

    torch.set_num_threads(1)
    net, inputs = module(compiled, "float32"), torch.from_numpy(x)

    def run():
        with torch.no_grad():
            net(inputs)

    run()
    return peak_during(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="256,1024")
    parser.add_argument("--layers", default="gla,deltanet")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # layer,length,target,form: measure in this process
    args = parser.parse_args()
    if args.one:
        layer, length, target, form = args.one.split(",")
        print(json.dumps(measure(layer, int(length), target, form, args.chunk)))
        return
    print("float32, MiB: torch, the peak resident memory of one forward above the memory before it; "
          "jax, the temporaries and outputs of the compiled forward")
    for layer in args.layers.split(","):
        for length in (int(n) for n in args.lengths.split(",")):
            states = length * BATCH * HEADS * KEYS * KEYS * 4 / 2**20
            figures = []
            for target in ("torch", "jax"):
                for form in ("recurrent", "chunk", "scan"):
                    out = subprocess.run([sys.executable, __file__, "--one", f"{layer},{length},{target},{form}",
                                          "--chunk", str(args.chunk)], capture_output=True, text=True, check=True)
                    figures.append(f"{target} {form} {json.loads(out.stdout.split()[-1]) / 2**20:7.0f}")
            print(f"  {layer:<9} T={length:<6} every state {states:6.0f} | " + " | ".join(figures))


if __name__ == "__main__":
    main()
