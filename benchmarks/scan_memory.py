"""Peak memory of the forms of matrix and delta heads (docs/schedules.md): the scan form forms
every step's state, the recurrent and chunk forms only the chunks' start states.

    python3 benchmarks/scan_memory.py                    # T in 256, 1024
    python3 benchmarks/scan_memory.py --lengths 4096 --layers gla

The layers of benchmarks/schedules.py (batch 4, 4 heads, dk = dv = 64, reading q^T S), float32,
the generated torch and jax code, each form in a fresh process. torch: after a warm-up, a thread
samples the process's resident memory, and the figure is its peak during one forward above what it
was just before; jax: XLA's own account of the compiled forward (its temporaries and outputs). Beside it, the size of every step's state of every head
(T * batch * heads * dk * dv numbers), which the scan form cannot do without.
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
    """In this process: the peak memory of one forward of ``layer`` in ``form``."""
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import schedules as s
    from lsrl.backends.head_code import head_groups

    kind = "matrix" if layer == "gla" else "delta"
    model = s.head_model(kind)
    groups = head_groups(model.layers[0])
    u, _ = s.head_units(kind, length, np.random.default_rng(0))
    module = s.generated(model, target, form, chunk)
    extra = (form, chunk) if form != s.RECURRENT else ()
    if target == "torch":
        import torch

        torch.set_num_threads(1)
        tu = torch.from_numpy(u)

        def run():
            with torch.no_grad():
                module.state_heads(tu, kind, groups, None, *extra)
    else:
        import jax
        import jax.numpy as jnp

        compiled = jax.jit(lambda u: module.state_heads(u, kind, groups, None, *extra)[0]).lower(jnp.asarray(u)).compile()
        memory = compiled.memory_analysis()  # XLA plans every buffer: its own account is exact
        return memory.temp_size_in_bytes + memory.output_size_in_bytes
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
            states = length * 4 * 4 * 64 * 64 * 4 / 2**20
            figures = []
            for target in ("torch", "jax"):
                for form in ("recurrent", "chunk", "scan"):
                    out = subprocess.run([sys.executable, __file__, "--one", f"{layer},{length},{target},{form}",
                                          "--chunk", str(args.chunk)], capture_output=True, text=True, check=True)
                    figures.append(f"{target} {form} {json.loads(out.stdout.split()[-1]) / 2**20:7.0f}")
            print(f"  {layer:<9} T={length:<6} every state {states:6.0f} | " + " | ".join(figures))


if __name__ == "__main__":
    main()
