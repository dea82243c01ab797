"""Random well-formed .lsrl programs for benchmark suites (docs/bench.md, "Random programs").

A program reads one integer token per step (``input x[1] in 0..V``) and is a sequence of ``size``
statements drawn from a small probabilistic grammar: running sums of a value or a condition
(``state``), ``delay``, comparisons (``larger``, ``smaller``, ``eq``, ``step``), logic (``and``,
``or``, ``not``) of conditions, ``ifelse`` between two values, affine combinations and ``relu``
of values, and optionally gated states (registers, which only the torch and jax targets compute);
it outputs its last value. Each statement reads one or two values bound
before it, so every program parses and verifies by construction; comparisons and ``ifelse`` keep
conditions 0/1, which lets the targets without products rebuild them from ReLUs.

``random_programs`` keeps a sample only if it compiles for the ``torch`` target, its outputs on a
fixed set of probe sequences are not all the same (a constant program, or one that ignores its
input) and differ from every program kept before (a behavioural duplicate).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np

VOCAB = 4
PROBES, PROBE_LENGTH = 12, 10
MAX_TRIES = 50  # samples per program kept, before the generator gives up


def sample(rng: random.Random, size: int, gated: bool = False) -> str:
    """The text of one random program of ``size`` statements; with ``gated``, a value may also be
    held in a gated state (a register that a condition overwrites)."""
    values, conditions, bound, lines = ["x"], [], ["x"], [f"input x[1] in 0..{VOCAB}", ""]

    def bind(expression: str, condition: bool) -> None:
        name = f"v{len(lines) - 2}"
        lines.append(f"{name} = {expression}")
        (conditions if condition else values).append(name)
        bound.append(name)

    for _ in range(size):
        # the newest value half the time, so that statements build on each other
        a, b = values[-1] if rng.random() < 0.5 else rng.choice(values), rng.choice(values)
        c = rng.choice(conditions) if conditions else None
        k = rng.randrange(VOCAB)
        productions = [
            (3, lambda: bind(rng.choice([f"larger({a}, {b})", f"smaller({a}, {k})", f"eq({a}, {k})",
                                         f"step({a} - {k})"]), True)),
            (2, lambda: bound.append(_state(lines, rng.choice(values + conditions), values))),
            (1, lambda: bind(f"delay({a}, {rng.randint(1, 2)})", False)),
            (1, lambda: bind(rng.choice([f"{a} + {b}", f"{a} - {b}", f"2 * {a} - {k}", f"relu({a} - {b})"]), False)),
        ]
        if c is not None:
            other = rng.choice(conditions)
            productions += [
                (2, lambda: bind(f"ifelse({c}, {a}, {b})", False)),
                (1, lambda: bind(rng.choice([f"and({c}, {other})", f"or({c}, {other})", f"not({c})"]), True)),
            ]
            if gated:
                productions.append((2, lambda: bound.append(_register(lines, c, a, values))))
        weights = [w for w, _ in productions]
        rng.choices([p for _, p in productions], weights)[0]()
    lines.append(f"output {bound[-1]}")
    return "\n".join(lines) + "\n"


def _state(lines: list[str], driven_by: str, values: list[str]) -> str:
    name = f"s{len(lines) - 2}"
    lines.append(f"state {name}[1] = 0 <- {name} + {driven_by}")
    values.append(name)
    return name


def _register(lines: list[str], write: str, value: str, values: list[str]) -> str:
    name = f"g{len(lines) - 2}"
    lines.append(f"state {name}[1] = 0 <- (1 - {write}) * {name} + {write} * {value}")
    values.append(name)
    return name


def probe_inputs() -> np.ndarray:
    rng = np.random.RandomState(12345)
    return rng.randint(0, VOCAB, size=(PROBES, PROBE_LENGTH, 1)).astype(np.float64)


def behaviour(source: str, name: str) -> bytes | None:
    """The program's outputs on the probes (rounded), or None if it is rejected: it does not
    compile for torch, or its outputs are the same on every probe (a constant program, or one
    that ignores its input)."""
    from lsrl.backends.target import Options
    from lsrl.errors import LsrlError
    from lsrl.ir.interpret import run
    from lsrl.load import compile_source
    from lsrl.targets import compile_to

    try:
        graph = compile_source(source, f"{name}.lsrl")
        compile_to(graph, "torch", Options(integer_inputs=True, max_len=64))
    except LsrlError:
        return None
    outputs = np.round(run(graph, probe_inputs()), 6)
    if np.all(outputs == outputs[:1]):  # the same on every probe: constant, or blind to the input
        return None
    return outputs.tobytes()


def random_programs(count: int, size: int, seed: int, gated: bool = False) -> list[dict[str, Any]]:
    """``count`` program entries (cases.example_programs' shape) sampled for ``seed``."""
    rng, seen, programs = random.Random(f"programs:{seed}:{size}{':gated' if gated else ''}"), set(), []
    for n in range(count):
        name = f"random{n:03d}_s{size}{'g' if gated else ''}"
        for _ in range(MAX_TRIES):
            source = sample(rng, size, gated)
            key = behaviour(source, name)
            if key is not None and hashlib.sha256(key).hexdigest() not in seen:
                seen.add(hashlib.sha256(key).hexdigest())
                break
        else:
            raise RuntimeError(f"no new program of size {size} in {MAX_TRIES} samples")
        tokens = [[str(t)] for t in range(VOCAB)]
        programs.append({"name": name, "kind": "random", "source": source, "params": {}, "input_range": ["0", str(VOCAB - 1)],
                         "integer_inputs": True, "max_len": None, "tokens": tokens, "refused_by": []})
    return programs
