"""Growth of ``mamba`` models (docs/growth.md): ``d_model``, ``d_inner``, ``d_state``, ``dt_rank``
and ``n_layer`` (blocks inserted at any position). Per mixer, with the reference's parameter names:

- ``d_model``: new units of the stream. ``out_proj``'s new rows (and biases) are free; the next
  block's ``in_proj`` reads them with 0 in its old channels (block 0's reads the input's zero
  padding: free there, unless a new block goes below it); the output is the first ``d_out``
  units, none of them new.
- ``d_inner``: new channels. Their rows of ``in_proj`` (x and z), ``conv1d``, ``dt_proj``,
  ``A_log`` and ``D`` are free; ``x_proj`` (whose dt, B and C every channel shares) and
  ``out_proj`` read them with 0.
- ``d_state``: a new state entry n of every channel. Its ``B`` row of ``x_proj`` is zero, so
  ``h_n`` stays 0 from its initial 0, and its ``C`` row and its column of ``A_log`` are free (the
  proof needs B or C zero; B keeps h_n exactly 0 in floating point too).
- ``dt_rank``: a new rank. Its row of ``x_proj`` is free and ``dt_proj`` reads it with 0 in the
  old channels.

Float constraints. The construction scales silu inputs by up to ``2**80``, so an old channel's
values can be near float32's largest. A free weight reading them would make a new unit overflow,
and ``0 * inf`` is nan: as real numbers nothing changes, in floats everything does. So the free
rows of ``x_proj`` (new dt and C rows) and of ``out_proj`` (new units) read the new channels only,
and the old channels' columns there are zero; so do the free units of an identity block, which the
next block's new channels read.
- ``n_layer``: a block that copies the units the next block's old channels read (on top, the
  first ``d_out`` units): unit j through the channel
  pair ``(silu(K x_j) - silu(-K x_j)) / K = x_j`` (as real numbers, for any K), each channel's z
  branch the constant 64 (``silu(64)``, which float32 and float64 round to 64), ``C = 0``,
  ``D = 1``, and ``out_proj`` dividing by ``64 K``. The other channels, the state's B and dt (read
  from the other channels), ``A_log`` and the other rows of ``out_proj`` are free (``C = 0``: the
  state is never read). It needs two channels per copied unit. With ``K = 2**40`` the copy is exact in
  floating point too wherever ``|K x| > 40`` (``sigmoid`` rounds to 1 and the other half of the
  pair is below half an ulp) and at 0; below that only the rounding of ``silu`` itself remains,
  under ``IDENTITY_ERROR`` per block, which the grown model's stated bound adds.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
from lsrl.backends.growth import free, grown_rows, grown_vector
from lsrl.backends.mamba import CONSTANT
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

SIZES = ("d_model", "d_inner", "d_state", "dt_rank", "n_layer")
IDENTITY_BLOCK = "identity (growth): copies units {units}"
PAIR_SCALE = 2.0**40  # K of the identity block's channel pairs
IDENTITY_ERROR = 40 / PAIR_SCALE * 2.0**-20  # per block and output: |x| < 40 / K, a few roundings of silu


def sizes(config: Mapping[str, Any]) -> dict[str, int]:
    return {name: config[name] for name in SIZES}


def grow(compiled: Compiled, wanted: Mapping[str, int], rng: np.random.Generator,
         init: Initializer, at: int) -> Compiled:
    config, now = copy.deepcopy(compiled.config), sizes(compiled.config)
    added = wanted["n_layer"] - now["n_layer"]
    blocks = []
    for i in range(now["n_layer"]):
        prefix = f"layers.{i}.mixer."
        block = {name[len(prefix):]: value for name, value in compiled.tensors.items() if name.startswith(prefix)}
        # the first block reads the input's zero padding in the new units, unless a new block goes below it
        blocks.append(_grown_block(block, i == 0 and not (at == 0 and added), now, wanted, rng, init))
    copied = list(range(config["d_out"])) if at == now["n_layer"] else _read_units(blocks[at], now)
    if added and 2 * len(copied) > wanted["d_inner"]:
        raise LsrlError(f"a new mamba block copies {len(copied)} units through two channels each: "
                        f"it needs d_inner >= {2 * len(copied)} (asked for {wanted['d_inner']})")
    inserted = [_identity_block(copied, config["d_conv"], wanted, rng, init) for _ in range(added)]
    tensors = {f"layers.{i}.mixer.{k}": v for i, block in enumerate(blocks[:at] + inserted + blocks[at:])
               for k, v in block.items()}
    config.update(wanted)
    config["expand"] = wanted["d_inner"] // wanted["d_model"] if wanted["d_inner"] % wanted["d_model"] == 0 \
        else wanted["d_inner"] / wanted["d_model"]
    config["blocks"] = config["blocks"][:at] + [IDENTITY_BLOCK.format(units=copied)] * added + config["blocks"][at:]
    if added:
        _add_to_stated_bound(config, added * IDENTITY_ERROR)
    figures = {**sizes(config), "parameters": int(sum(t.size for t in tensors.values()))}
    return Compiled(compiled.target, config, tensors, dict(compiled.files), figures=figures)


def _read_units(block: dict[str, np.ndarray], now: Mapping[str, int]) -> list[int]:
    """The stream units the old channels of ``block`` read (x and z rows of ``in_proj``)."""
    c, c2, d = now["d_inner"], len(block["in_proj.weight"]) // 2, now["d_model"]
    rows = np.concatenate([block["in_proj.weight"][:c, :d], block["in_proj.weight"][c2 : c2 + c, :d]])
    return [int(j) for j in np.flatnonzero(np.any(rows != 0, axis=0))]


def _add_to_stated_bound(config: dict[str, Any], error: float) -> None:
    """The identity blocks' error added to the bound per dtype; "exact" becomes "bounded"."""
    stated = config.get("error_bound", {})
    for dtype in ("float32", "float64"):
        if stated.get(dtype) is not None:
            stated[dtype] += error
        if config.get("precision", {}).get(dtype) == "exact":
            config["precision"][dtype] = "bounded"


def _grown_block(block: dict[str, np.ndarray], first: bool, now: Mapping[str, int], wanted: Mapping[str, int],
                 rng: np.random.Generator, init: Initializer) -> dict[str, np.ndarray]:
    d, c, n, r = (now[k] for k in ("d_model", "d_inner", "d_state", "dt_rank"))
    d2, c2, n2, r2 = (wanted[k] for k in ("d_model", "d_inner", "d_state", "dt_rank"))
    width = block["conv1d.weight"].shape[-1]
    conv = grown_rows(block["conv1d.weight"][:, 0, :], 1, c, c2, width, rng, init)
    return {
        # the first block's new columns read the input's zero padding: free
        "in_proj.weight": grown_rows(block["in_proj.weight"], 2, c, c2, d2, rng, init, reads_new=first),
        "in_proj.bias": grown_vector(block["in_proj.bias"], 2, c, c2, rng, init),
        "conv1d.weight": conv[:, None, :],
        "conv1d.bias": grown_vector(block["conv1d.bias"], 1, c, c2, rng, init),
        "x_proj.weight": _grown_x_proj(block["x_proj.weight"], (r, n, c), (r2, n2, c2), rng, init),
        "dt_proj.weight": grown_rows(block["dt_proj.weight"], 1, c, c2, r2, rng, init),
        "dt_proj.bias": grown_vector(block["dt_proj.bias"], 1, c, c2, rng, init),
        "A_log": grown_rows(block["A_log"], 1, c, c2, n2, rng, init, reads_new=True),
        "D": grown_vector(block["D"], 1, c, c2, rng, init),
        "out_proj.weight": _new_rows_read_new_channels(grown_rows(block["out_proj.weight"], 1, d, d2, c2, rng, init), d, c),
        "out_proj.bias": grown_vector(block["out_proj.bias"], 1, d, d2, rng, init),
    }


def _new_rows_read_new_channels(out_proj: np.ndarray, d: int, c: int) -> np.ndarray:
    out_proj[d:, :c] = 0  # a float constraint: old channels hold values scaled by up to 2**80
    return out_proj


def _grown_x_proj(x_proj: np.ndarray, old: tuple[int, int, int], new: tuple[int, int, int],
                  rng: np.random.Generator, init: Initializer) -> np.ndarray:
    """Rows dt (rank), B, C (state): new dt and C rows free over the new channels, new B rows
    zero (so the new state entries stay 0); old rows read the new channels with 0."""
    (r, n, c), (r2, n2, c2) = old, new
    out = np.zeros((r2 + 2 * n2, c2))
    out[:r, :c], out[r:r2, c:] = x_proj[:r], free(init, rng, (r2 - r, c2 - c))
    out[r2 : r2 + n, :c] = x_proj[r : r + n]
    out[r2 + n2 : r2 + n2 + n, :c], out[r2 + n2 + n :, c:] = x_proj[r + n :], free(init, rng, (n2 - n, c2 - c))
    return out


def _identity_block(copied: list[int], width: int, wanted: Mapping[str, int], rng: np.random.Generator,
                    init: Initializer) -> dict[str, np.ndarray]:
    d, c, n, r = (wanted[k] for k in ("d_model", "d_inner", "d_state", "dt_rank"))
    in_proj, in_bias = free(init, rng, (2 * c, d)), free(init, rng, (2 * c,))
    conv, conv_bias = free(init, rng, (c, 1, width)), free(init, rng, (c,))
    x_proj = free(init, rng, (r + 2 * n, c))
    x_proj[r + n :] = 0  # C = 0: the state is never read
    x_proj[:, : 2 * len(copied)] = 0  # dt and B read the free channels, not the pairs' values times K
    d_skip = free(init, rng, (c,))
    out_proj, out_bias = free(init, rng, (d, c)), free(init, rng, (d,))
    out_proj[copied], out_bias[copied] = 0, 0  # the copies read their channel pairs only
    out_proj[:, : 2 * len(copied)] = 0  # the free units do not read the pairs' values times K (read above the top)
    for k, j in enumerate(copied):
        for channel, sign in ((2 * k, 1.0), (2 * k + 1, -1.0)):
            in_proj[channel], in_proj[c + channel] = 0, 0
            in_proj[channel, j], in_bias[channel], in_bias[c + channel] = sign * PAIR_SCALE, 0, CONSTANT
            conv[channel], conv_bias[channel] = 0, 0
            conv[channel, 0, -1] = 1
            d_skip[channel] = 1
            out_proj[j, channel] = sign / (CONSTANT * PAIR_SCALE)  # silu(64) is 64 in float32 and float64
    return {
        "in_proj.weight": in_proj, "in_proj.bias": in_bias, "conv1d.weight": conv, "conv1d.bias": conv_bias,
        "x_proj.weight": x_proj, "dt_proj.weight": free(init, rng, (c, r)), "dt_proj.bias": free(init, rng, (c,)),
        "A_log": free(init, rng, (c, n)), "D": d_skip, "out_proj.weight": out_proj, "out_proj.bias": out_bias,
    }
