"""The cases of a suite (docs/bench.md): programs times targets times obfuscations, and their data.

A case's program is a row of the shared table that has an ``examples/*.lsrl`` source (its params
and the promises it states about its inputs), or a random program (``random_programs``). Its
input data are ``K`` sequences whose tokens are drawn from the tokens of the row's own runs (which
keep the promises, stated or not: 0/1 conditions stay 0/1), or from a random program's declared
tokens.
"""

from __future__ import annotations

import fnmatch
import random
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

BOUNDED_MAX_LEN = 64  # the length targets that need a bound are built for (cases use shorter data)
SEQUENCE_LENGTH = 12


def example_programs(pattern: str) -> list[dict[str, Any]]:
    """The table's rows with an .lsrl source whose file name matches ``pattern`` (a glob)."""
    from lsrl.corpus import CASES

    programs = []
    for row in CASES:
        if row.source and fnmatch.fnmatch(row.source, pattern):
            pool = sorted({tuple(_number(v) for v in (t if isinstance(t, (list, tuple)) else [t]))
                           for run in row.runs for t in run.inputs})
            programs.append({"name": row.name, "kind": "example", "file": row.source, "row": row.name,
                             "params": {name: str(value) for name, value in row.params.items()},
                             "input_range": _range(row.input_range), "integer_inputs": row.integer_inputs,
                             "max_len": row.max_len, "tokens": [list(t) for t in pool],
                             "refused_by": sorted(row.refused_by)})
    return programs


def _number(value: object) -> str:
    return str(Fraction(str(value)))


def _range(bounds: tuple | None) -> list[str] | None:
    return None if bounds is None else [_number(bounds[0]), _number(bounds[1])]


def case_specs(programs: Sequence[dict], targets: Sequence[str], obfuscations: Sequence[str], datasets: int,
               seed: int) -> list[dict[str, Any]]:
    """One spec per program, target and obfuscation, in that order; each has its own seed."""
    specs = []
    for program in programs:
        for target in targets:
            for obfuscation in obfuscations:
                case_id = f"{program['name']}.{target}.{obfuscation}"
                specs.append({"id": case_id, "program": program, "target": target, "obfuscation": obfuscation,
                              "datasets": datasets, "length": SEQUENCE_LENGTH,
                              "seed": random.Random(f"{seed}:{case_id}").randrange(2**31),
                              "data_seed": random.Random(f"{seed}:{program['name']}").randrange(2**31)})
    return specs


def sample_inputs(spec: dict, dim: int) -> np.ndarray:
    """``[K, length, dim]`` float64 inputs drawn from the program's tokens: the same for every
    target and obfuscation of a program, for a seed."""
    rng = random.Random(spec["data_seed"])
    pool = [[float(Fraction(v)) for v in token] for token in spec["program"]["tokens"]]
    if any(len(token) != dim for token in pool):
        raise ValueError(f"the program's tokens do not have its input's length {dim}")
    return np.array([[rng.choice(pool) for _ in range(spec["length"])] for _ in range(spec["datasets"])])


def options(spec: dict):
    """The compile options of a case: the promises its program states, and float64 for a target
    whose weights depend on the dtype (hawk): a case's data and interventions run in float64."""
    from lsrl.backends import get_target
    from lsrl.backends.target import Options
    from lsrl.ir.numbers import exact

    program = spec["program"]
    bounds = program["input_range"]
    dtype = "float64" if get_target(spec["target"]).dtype_specific else Options.dtype
    return Options(input_range=None if bounds is None else tuple(exact(b) for b in bounds),
                   integer_inputs=program["integer_inputs"], max_len=program["max_len"] or BOUNDED_MAX_LEN, dtype=dtype)
