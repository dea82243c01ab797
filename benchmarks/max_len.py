"""Compile time and peak memory of a target over ``--max-len``.

    python3 benchmarks/max_len.py [--program examples/counters.lsrl] [--target mamba hawk]
                                  [--max-len 1024 1000000 1000000000] [--dtype float32] [--memory-gb 12]

For each target and length, runs ``lsrl compile PROGRAM --target T --max-len N --dtype D`` in a
fresh process (this interpreter, so the installed lsrl) under ``/usr/bin/time -v``, with its
address space capped at ``--memory-gb``, and prints a Markdown table of the wall-clock seconds
(process start, imports and writing the files included), the peak resident memory and how it
ended (docs/target-mamba-hawk.md quotes it).
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(program: str, target: str, max_len: int, dtype: str, memory_gb: float) -> dict[str, str]:
    def cap_memory() -> None:
        limit = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryDirectory() as out:
        command = ["/usr/bin/time", "-v", sys.executable, "-m", "lsrl", "compile", program, "--target", target,
                   "--max-len", str(max_len), "--dtype", dtype, "-o", out]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, preexec_fn=cap_memory)
    report = done.stderr
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", report).group(1)
    seconds = sum(float(part) * 60**k for k, part in enumerate(reversed(wall.split(":"))))
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1))
    lines = [line for line in report.splitlines() if line and not line.startswith("\t") and "warning:" not in line]
    ended = "ok" if done.returncode == 0 else (lines[0] if lines else f"exit status {done.returncode}")
    return {"target": target, "dtype": dtype, "max_len": str(max_len), "seconds": f"{seconds:.1f}",
            "peak MB": str(round(peak_kb / 1024)), "result": ended}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--program", default="examples/counters.lsrl")
    parser.add_argument("--target", nargs="*", default=["mamba", "hawk"])
    parser.add_argument("--max-len", nargs="*", type=int, default=[1024, 10**6, 10**9])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--memory-gb", type=float, default=12.0, help="address-space cap of each compile")
    args = parser.parse_args()
    rows = [measure(args.program, t, n, args.dtype, args.memory_gb) for t in args.target for n in args.max_len]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
