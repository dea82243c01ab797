"""Growth of ``linear-rnn`` models (docs/growth.md): ``state_size`` (every recurrence grown to at
least that many units) and ``num_blocks`` (blocks inserted anywhere), in the target's parameters
``blocks.{i}.recurrence.{A, B, b, init}`` (``backends/linear_rnn.py``).

- ``state_size``: new state units of a recurrence ``h_t = A h_{t-1} + B x_t + b``. Their rows of
  ``A`` (over every unit), ``B``, ``b`` and ``init`` are free; the old rows of ``A`` and whatever
  reads the recurrence (the block's first MLP layer, the next block, or the readout) read them
  with 0. By induction over the steps, no old unit depends on a new one.
- ``num_blocks``: a block with a recurrence and no MLP that copies its input: ``A``'s copy rows 0,
  ``B`` the identity on the copies, ``b`` 0, so ``h_t = x_t`` whatever ``init`` is. It has
  ``max(input width, state_size)`` units: the others (their rows of ``A``, ``B``, ``b``) and every
  ``init`` are free, read with 0 by the next block. Exact as real numbers and in floating point.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
from lsrl.backends.growth import free, grown_rows, grown_vector, zero_columns
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

SIZES = ("state_size", "num_blocks")
FREE = "free"


def sizes(config: Mapping[str, Any]) -> dict[str, int]:
    blocks = config["model"]["blocks"]
    return {"state_size": max([b["state_size"] or 0 for b in blocks]), "num_blocks": len(blocks)}


def grow(compiled: Compiled, wanted: Mapping[str, int], rng: np.random.Generator, init: Initializer,
         at: int) -> Compiled:
    config, now = copy.deepcopy(compiled.config), sizes(compiled.config)
    if wanted["state_size"] > now["state_size"] and now["state_size"] == 0:
        raise LsrlError("this linear-rnn model has no recurrence to grow: insert blocks (num_blocks), which have one")
    model, units = config["model"], config["block_units"]
    blocks = [_block_tensors(compiled.tensors, i) for i in range(len(model["blocks"]))]
    readout = {k[len("readout."):]: v for k, v in compiled.tensors.items() if k.startswith("readout.")}
    for i, spec in enumerate(model["blocks"]):
        size = spec["state_size"]
        if size is None or size >= wanted["state_size"]:
            continue
        new = wanted["state_size"]
        recurrence = blocks[i]
        recurrence["recurrence.A"] = grown_rows(recurrence["recurrence.A"], 1, size, new, new, rng, init)
        recurrence["recurrence.B"] = grown_rows(recurrence["recurrence.B"], 1, size, new,
                                                recurrence["recurrence.B"].shape[1], rng, init)
        for name in ("recurrence.b", "recurrence.init"):
            recurrence[name] = grown_vector(recurrence[name], 1, size, new, rng, init)
        _pad_reader(blocks, readout, model["blocks"], i, new, within=True)
        spec["state_size"] = new
        units[i]["recurrence"] = units[i]["recurrence"] + [FREE] * (new - size)
    width = model["input_size"] if at == 0 else _output_size(model, at - 1)
    copies = max(width, wanted["state_size"])
    added = wanted["num_blocks"] - now["num_blocks"]
    inserted = [_identity_block(width, width if k == 0 else copies, copies, rng, init) for k in range(added)]
    if inserted:
        _pad_reader(blocks, readout, model["blocks"], at - 1, copies, within=False)
        labels = [f"copy of {u}" for u in (_output_labels(config, at - 1) if at else
                                            [label["name"] for label in config["input_labels"]])]
        model["blocks"][at:at] = [{"state_size": copies, "mlp_sizes": []} for _ in inserted]
        units[at:at] = [{"recurrence": labels + [FREE] * (copies - width), "mlp": []} for _ in inserted]
    blocks[at:at] = inserted
    tensors = {f"blocks.{i}.{name}": value for i, block in enumerate(blocks) for name, value in block.items()}
    tensors.update({f"readout.{name}": value for name, value in readout.items()})
    config["model"]["blocks"] = model["blocks"]
    figures = {**sizes(config), "parameters": int(sum(t.size for t in tensors.values()))}
    return Compiled(compiled.target, config, tensors, dict(compiled.files), figures=figures)


def _block_tensors(tensors: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    prefix = f"blocks.{i}."
    return {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}


def _output_size(model: Mapping[str, Any], i: int) -> int:
    spec = model["blocks"][i]
    return spec["mlp_sizes"][-1] if spec["mlp_sizes"] else spec["state_size"]


def _output_labels(config: Mapping[str, Any], i: int) -> list[str]:
    units = config["block_units"][i]
    return units["mlp"][-1] if units["mlp"] else units["recurrence"]


def _pad_reader(blocks: list[dict[str, np.ndarray]], readout: dict[str, np.ndarray], specs: list[dict[str, Any]],
                i: int, cols: int, within: bool) -> None:
    """Give what reads block ``i``'s recurrence (``within``) or output (block ``i = -1``: the
    input) ``cols`` columns, the new ones 0."""
    if within and specs[i]["mlp_sizes"]:
        blocks[i]["mlp.0.weight"] = zero_columns(blocks[i]["mlp.0.weight"], cols)
        return
    if i + 1 == len(specs):
        readout["weight"] = zero_columns(readout["weight"], cols)
        return
    name = "recurrence.B" if specs[i + 1]["state_size"] is not None else "mlp.0.weight"
    blocks[i + 1][name] = zero_columns(blocks[i + 1][name], cols)


def _identity_block(width: int, reads: int, units: int, rng: np.random.Generator,
                    init: Initializer) -> dict[str, np.ndarray]:
    """``h_t = x_t`` on the first ``width`` units of its ``reads`` inputs (proof: the module
    docstring); the other units free."""
    A, B = free(init, rng, (units, units)), free(init, rng, (units, reads))
    b, start = free(init, rng, (units,)), free(init, rng, (units,))
    A[:width], B[:width], b[:width] = 0, np.eye(width, reads), 0
    return {"recurrence.A": A, "recurrence.B": B, "recurrence.b": b, "recurrence.init": start}
