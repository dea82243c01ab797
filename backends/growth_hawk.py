"""Growth of ``hawk`` models (docs/growth.md): ``hidden_size`` (the stream, d_model),
``lru_width`` (the recurrence's channels), ``intermediate_size`` (the MLP's width, twice its
channels as transformers counts it) and ``num_hidden_layers`` (layers inserted anywhere), with the
reference's parameter names (``backends/hawk.py``). ``num_attention_heads``, the number of blocks
of the RG-LRU's block-diagonal gates, is a setting: given, it sets the gate blocks; else their
width stays.

- ``hidden_size``: new stream units. The old channels read them with 0 (``linear_x``, ``linear_y``,
  ``gate_proj``, ``up_proj``), except in the first block, whose input pads them with zeros: free
  there. ``linear_out``'s and ``down_proj``'s new rows, and their biases, are free.
- ``lru_width``: new channels. Their rows of ``linear_x``, ``linear_y``, ``conv_1d``,
  ``recurrent_param`` and their gates' columns are free; ``linear_out`` reads them with 0, and
  the old channels' gates read them with 0 where a wider gate block puts them side by side.
- ``intermediate_size``: new MLP channels, ``gate_proj`` and ``up_proj`` rows free, read by
  ``down_proj`` with 0.

Float constraint, as in mamba: an old channel holds values scaled up by the construction (gelu
scales up to ``2**40``, float64 accumulators near ``2**52``), so the free rows that would read them
(the new units' rows of ``linear_out`` and ``down_proj``) read the new channels only.

- ``num_hidden_layers``: a layer that copies the units the next layer's old channels read (the
  outputs, on top): per copied unit j, a recurrent channel with ``linear_x`` row ``e_j``, conv tap 1
  at lag 0, both gates' columns 0 with bias ``GATE_OPEN`` (``sigmoid(100)`` rounds to 1),
  ``recurrent_param`` ``FORGET_PARAM`` (``a = exp(-800)`` rounds to 0), ``linear_y`` the constant
  16 (``gelu(16) = 16``) and ``linear_out`` ``1/16``; and an MLP channel ``gelu(16) * x_j / 16``
  (``gate_proj`` row 0, bias 16; ``up_proj`` row ``e_j``; ``down_proj`` 1/16). Every other
  channel and every other unit's row is free. In float32 and float64 the copy is exact; as real
  numbers it is off by ``e**-100 |x_j|`` (the gate) and ``e**-800 |h_prev|`` (the decay), the
  compiler's own pass-through blocks being the same.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from lsrl.backends.growth import free, grown_rows, grown_vector
from lsrl.backends.hawk import FORGET_PARAM, GATE_OPEN, Y_CONSTANT
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

SIZES = ("hidden_size", "lru_width", "intermediate_size", "num_hidden_layers")
SETTINGS = ("num_attention_heads",)
IDENTITY_LAYER = "identity (growth): copies units {units}"
GATES = ("input_gate", "recurrent_gate")
TEMPORAL, MLP = "temporal_block.", "mlp_block."


def sizes(config: Mapping[str, Any]) -> dict[str, int]:
    return {name: config[name] for name in SIZES + SETTINGS}


def grow(compiled: Compiled, wanted: Mapping[str, int], rng: np.random.Generator, init: Initializer,
         at: int) -> Compiled:
    config, now = copy.deepcopy(compiled.config), sizes(compiled.config)
    if wanted["intermediate_size"] % 2:
        raise LsrlError(f"intermediate_size {wanted['intermediate_size']} is odd: a hawk MLP has intermediate_size / 2 "
                        "channels (transformers' convention), so give an even number")
    old = _Shape(now["hidden_size"], now["lru_width"], now["intermediate_size"] // 2,
                 now["lru_width"] // now["num_attention_heads"], config["conv1d_width"])
    new = _Shape(wanted["hidden_size"], wanted["lru_width"], wanted["intermediate_size"] // 2,
                 _block_width(wanted, old.block), config["conv1d_width"])
    layers, added = now["num_hidden_layers"], wanted["num_hidden_layers"] - now["num_hidden_layers"]
    grown = []
    for i in range(layers):
        prefix = f"layers.{i}."
        layer = {name[len(prefix):]: value for name, value in compiled.tensors.items() if name.startswith(prefix)}
        # the first layer reads the input's zero padding in the new units, unless a new layer goes below it
        grown.append(_grown_layer(layer, old, new, i == 0 and not (at == 0 and added), rng, init))
    copied = list(range(config["d_out"])) if at == layers else _read_units(grown[at], old)
    if added and (len(copied) > new.lru or len(copied) > new.inter):
        raise LsrlError(f"a new hawk layer copies {len(copied)} units through a recurrent and an MLP channel each: "
                        f"it needs lru_width and intermediate_size / 2 of at least {len(copied)}")
    inserted = [_identity_layer(copied, new, rng, init) for _ in range(added)]
    tensors = {f"layers.{i}.{name}": value for i, layer in enumerate(grown[:at] + inserted + grown[at:])
               for name, value in layer.items()}
    config.update({"hidden_size": new.d_model, "lru_width": new.lru, "intermediate_size": 2 * new.inter,
                   "num_attention_heads": new.lru // new.block, "num_hidden_layers": layers + added})
    config["blocks"] = config["blocks"][:at] + [IDENTITY_LAYER.format(units=copied)] * added + config["blocks"][at:]
    figures = {**sizes(config), "parameters": int(sum(t.size for t in tensors.values()))}
    return Compiled(compiled.target, config, tensors, dict(compiled.files), figures=figures)


@dataclass(frozen=True)
class _Shape:
    d_model: int
    lru: int
    inter: int  # MLP channels
    block: int  # channels per gate block
    conv: int  # conv taps


def _block_width(wanted: Mapping[str, int], block: int) -> int:
    """The width of the gates' blocks: ``lru_width / num_attention_heads`` where the heads are
    given, else the old width. An old block must lie inside one new block."""
    heads, lru = wanted.get("num_attention_heads"), wanted["lru_width"]
    width = lru // heads if heads is not None and 1 <= heads <= lru else block
    if heads is not None and width * heads != lru or lru % width or width % block:
        raise LsrlError(f"lru_width {lru} in gate blocks of {width} channels: the width must divide "
                        f"lru_width and be a multiple of the old blocks' {block} (num_attention_heads sets it)")
    return width


def _grown_layer(layer: dict[str, np.ndarray], old: _Shape, new: _Shape, pads_input: bool, rng: np.random.Generator,
                 init: Initializer) -> dict[str, np.ndarray]:
    out = {}
    for name in ("linear_x", "linear_y"):
        out[f"{TEMPORAL}{name}.weight"] = grown_rows(layer[f"{TEMPORAL}{name}.weight"], 1, old.lru, new.lru, new.d_model,
                                                     rng, init, reads_new=pads_input)
        out[f"{TEMPORAL}{name}.bias"] = grown_vector(layer[f"{TEMPORAL}{name}.bias"], 1, old.lru, new.lru, rng, init)
    conv = layer[f"{TEMPORAL}conv_1d.weight"]
    out[f"{TEMPORAL}conv_1d.weight"] = grown_rows(conv[:, 0, :], 1, old.lru, new.lru, conv.shape[-1], rng, init)[:, None, :]
    for name in ("conv_1d.bias", "rg_lru.recurrent_param"):
        out[TEMPORAL + name] = grown_vector(layer[TEMPORAL + name], 1, old.lru, new.lru, rng, init)
    for gate in GATES:
        weight, bias = layer[f"{TEMPORAL}rg_lru.{gate}_weight"], layer[f"{TEMPORAL}rg_lru.{gate}_bias"]
        out[f"{TEMPORAL}rg_lru.{gate}_weight"], out[f"{TEMPORAL}rg_lru.{gate}_bias"] = \
            _grown_gate(weight, bias, old, new, rng, init)
    out[f"{TEMPORAL}linear_out.weight"] = _reading_new_only(layer[f"{TEMPORAL}linear_out.weight"], old.d_model,
                                                            new.d_model, old.lru, new.lru, rng, init)
    out[f"{TEMPORAL}linear_out.bias"] = grown_vector(layer[f"{TEMPORAL}linear_out.bias"], 1, old.d_model, new.d_model,
                                                     rng, init)
    for name in ("gate_proj", "up_proj"):
        out[f"{MLP}{name}.weight"] = grown_rows(layer[f"{MLP}{name}.weight"], 1, old.inter, new.inter, new.d_model, rng, init)
        out[f"{MLP}{name}.bias"] = grown_vector(layer[f"{MLP}{name}.bias"], 1, old.inter, new.inter, rng, init)
    out[f"{MLP}down_proj.weight"] = _reading_new_only(layer[f"{MLP}down_proj.weight"], old.d_model, new.d_model,
                                                      old.inter, new.inter, rng, init)
    out[f"{MLP}down_proj.bias"] = grown_vector(layer[f"{MLP}down_proj.bias"], 1, old.d_model, new.d_model, rng, init)
    return out


def _reading_new_only(weight: np.ndarray, units: int, new_units: int, channels: int, new_channels: int,
                      rng: np.random.Generator, init: Initializer) -> np.ndarray:
    """A block's output map grown: old units read the new channels with 0; the new units' rows are
    free over the new channels and 0 over the old ones (the float constraint)."""
    out = grown_rows(weight, 1, units, new_units, new_channels, rng, init)
    out[units:, :channels] = 0
    return out


def _grown_gate(weight: np.ndarray, bias: np.ndarray, old: _Shape, new: _Shape, rng: np.random.Generator,
                init: Initializer) -> tuple[np.ndarray, np.ndarray]:
    """An RG-LRU gate (``x @ W[head] + b[head]`` per block) in blocks of ``new.block``: an old
    channel's gate reads the old channels of its old block as before and every other channel
    with 0; a new channel's gate is free."""
    heads = new.lru // new.block
    out = free(init, rng, (new.lru, new.block))  # row: the channel whose gate it is; column: what it reads
    out[: old.lru] = 0
    out_bias = free(init, rng, (new.lru,))
    for c in range(old.lru):
        head, start = divmod(c, old.block)[0], c - c % old.block
        for k in range(old.block):
            out[c, (start + k) % new.block] = weight[head, k, c % old.block]
        out_bias[c] = bias[head, c % old.block]
    blocks = out.reshape(heads, new.block, new.block)  # [head, gate's channel, read channel]
    return blocks.transpose(0, 2, 1).copy(), out_bias.reshape(heads, new.block)


def _read_units(layer: dict[str, np.ndarray], old: _Shape) -> list[int]:
    """The stream units the old channels of ``layer``'s recurrent block read."""
    reads = np.zeros(old.d_model, dtype=bool)
    for name in ("linear_x", "linear_y"):
        reads |= np.any(layer[f"{TEMPORAL}{name}.weight"][: old.lru, : old.d_model] != 0, axis=0)
    return [int(j) for j in np.flatnonzero(reads)]


def _identity_layer(copied: list[int], shape: _Shape, rng: np.random.Generator, init: Initializer) -> dict[str, np.ndarray]:
    """A layer copying the units ``copied`` (proof: the module docstring); channel k copies unit
    ``copied[k]`` in both blocks."""
    d, lru, inter, width = shape.d_model, shape.lru, shape.inter, shape.conv
    t = {
        "linear_x.weight": free(init, rng, (lru, d)), "linear_x.bias": free(init, rng, (lru,)),
        "linear_y.weight": free(init, rng, (lru, d)), "linear_y.bias": free(init, rng, (lru,)),
        "conv_1d.weight": free(init, rng, (lru, 1, width)), "conv_1d.bias": free(init, rng, (lru,)),
        "rg_lru.recurrent_param": free(init, rng, (lru,)),
        "linear_out.weight": free(init, rng, (d, lru)), "linear_out.bias": free(init, rng, (d,)),
    }
    m = {
        "gate_proj.weight": free(init, rng, (inter, d)), "gate_proj.bias": free(init, rng, (inter,)),
        "up_proj.weight": free(init, rng, (inter, d)), "up_proj.bias": free(init, rng, (inter,)),
        "down_proj.weight": free(init, rng, (d, inter)), "down_proj.bias": free(init, rng, (d,)),
    }
    gates = {gate: (free(init, rng, (lru, shape.block)), free(init, rng, (lru,))) for gate in GATES}
    for k, j in enumerate(copied):
        for name in ("linear_x", "linear_y", "conv_1d"):
            t[f"{name}.weight"][k], t[f"{name}.bias"][k] = 0, 0
        t["linear_x.weight"][k, j], t["linear_y.bias"][k] = 1, Y_CONSTANT
        t["conv_1d.weight"][k, 0, -1], t["rg_lru.recurrent_param"][k] = 1, FORGET_PARAM
        for weight, bias in gates.values():
            weight[k], bias[k] = 0, GATE_OPEN
        t["linear_out.weight"][j], t["linear_out.bias"][j] = 0, 0
        t["linear_out.weight"][j, k] = 1 / Y_CONSTANT
        m["gate_proj.weight"][k], m["gate_proj.bias"][k] = 0, Y_CONSTANT
        m["up_proj.weight"][k], m["up_proj.bias"][k] = 0, 0
        m["up_proj.weight"][k, j] = 1
        m["down_proj.weight"][j], m["down_proj.bias"][j] = 0, 0
        m["down_proj.weight"][j, k] = 1 / Y_CONSTANT
    heads = lru // shape.block
    for gate, (weight, bias) in gates.items():
        t[f"rg_lru.{gate}_weight"] = weight.reshape(heads, shape.block, shape.block).transpose(0, 2, 1).copy()
        t[f"rg_lru.{gate}_bias"] = bias.reshape(heads, shape.block)
    return {**{TEMPORAL + k: v for k, v in t.items()}, **{MLP + k: v for k, v in m.items()}}
