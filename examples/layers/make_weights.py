"""Writes the random weights of the layers in this folder: gla.safetensors, deltanet.safetensors,
mamba.safetensors, rglru.safetensors and mesa.safetensors (python examples/layers/make_weights.py).

Deterministic (numpy's generator, seed 14) and small (a few kilobytes each), so the files are
committed and `lsrl run examples/layers/gla.lsrl` works as checked out. Every value is a float32
number stored as float32, so the float32 and float64 models of a layer have the same weights.
Tensors keep the names of the modules the tests check the layers against (flash-linear-attention's
layers; transformers' MambaMixer and RecurrentGemmaRecurrentBlock), except that `load` reads at
most two dimensions: a depthwise convolution's weight [channels, 1, width] is stored as
[channels, width], and RG-LRU's per-head gate weights [heads, block, block] and biases
[heads, block] as [heads * block, block] and [heads * block].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent


def _tensors(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]], scale: float = 0.5) -> dict[str, np.ndarray]:
    return {name: (rng.standard_normal(shape) * scale).astype(np.float32) for name, shape in shapes.items()}


def gla(rng: np.random.Generator, d_model: int = 8, heads: int = 2, keys: int = 4, values: int = 4) -> dict:
    return _tensors(rng, {
        "q_proj.weight": (heads * keys, d_model), "k_proj.weight": (heads * keys, d_model),
        "v_proj.weight": (heads * values, d_model), "gk_proj.weight": (heads * keys, d_model),
        "gk_proj.bias": (heads * keys,), "o_proj.weight": (d_model, heads * values),
    })


def deltanet(rng: np.random.Generator, d_model: int = 8, heads: int = 2, keys: int = 4, values: int = 4) -> dict:
    return _tensors(rng, {
        "q_proj.weight": (heads * keys, d_model), "k_proj.weight": (heads * keys, d_model),
        "v_proj.weight": (heads * values, d_model), "b_proj.weight": (heads, d_model),
        "o_proj.weight": (d_model, heads * values),
    })


def mamba(rng: np.random.Generator, d_model: int = 4, expand: int = 2, d_state: int = 4, d_conv: int = 4,
          dt_rank: int = 2) -> dict:
    inner = expand * d_model
    tensors = _tensors(rng, {
        "in_proj.weight": (2 * inner, d_model), "conv1d.weight": (inner, d_conv), "conv1d.bias": (inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, inner), "dt_proj.weight": (inner, dt_rank),
        "dt_proj.bias": (inner,), "D": (inner,), "out_proj.weight": (d_model, inner),
    })
    # A = -exp(A_log) from -1 to -d_state per channel, as Mamba initializes it, perturbed
    a_log = np.log(np.arange(1, d_state + 1))[None, :] + 0.1 * rng.standard_normal((inner, d_state))
    tensors["A_log"] = a_log.astype(np.float32)
    return tensors


def rglru(rng: np.random.Generator, hidden: int = 4, width: int = 4, heads: int = 2, conv: int = 4) -> dict:
    block = width // heads
    return _tensors(rng, {
        "linear_y.weight": (width, hidden), "linear_y.bias": (width,),
        "linear_x.weight": (width, hidden), "linear_x.bias": (width,),
        "conv_1d.weight": (width, conv), "conv_1d.bias": (width,),
        "rg_lru.input_gate_weight": (heads * block, block), "rg_lru.input_gate_bias": (heads * block,),
        "rg_lru.recurrent_gate_weight": (heads * block, block), "rg_lru.recurrent_gate_bias": (heads * block,),
        "rg_lru.recurrent_param": (width,),
        "linear_out.weight": (hidden, width), "linear_out.bias": (hidden,),
    })


def mesa(rng: np.random.Generator, d_model: int = 8, heads: int = 2, keys: int = 4) -> dict:
    tensors = _tensors(rng, {
        "q_proj.weight": (heads * keys, d_model), "k_proj.weight": (heads * keys, d_model),
        "v_proj.weight": (heads * keys, d_model), "g_proj.weight": (heads, d_model), "g_proj.bias": (heads,),
        "b_proj.weight": (heads, d_model), "o_proj.weight": (d_model, heads * keys),
    })
    # the ridge penalty per head and key: positive, from 0.25 (MesaNet's lower bound) up
    tensors["lamb"] = (0.25 + np.abs(rng.standard_normal(heads * keys))).astype(np.float32)
    return tensors


def main() -> None:
    rng = np.random.default_rng(14)
    for name, make in (("gla", gla), ("deltanet", deltanet), ("mamba", mamba), ("rglru", rglru), ("mesa", mesa)):
        save_file(make(rng), str(HERE / f"{name}.safetensors"))


if __name__ == "__main__":
    main()
