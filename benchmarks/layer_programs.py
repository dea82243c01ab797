"""The layer programs and hand-written references that benchmarks/gated_layers.py and
benchmarks/schedules.py share: each program is one state layer whose per-token operands are the
program's input, so no projection is timed on either side.

- ``gated_program(channels)``: ``h_t = a_t * h_{t-1} + v_t`` elementwise (a gated diagonal state),
  input per token the values ``v`` then the gates ``a`` of every channel.
- ``recurrence_program("gla" | "deltanet", heads, keys)``: GLA (``S_t = diag(exp(g_t)) S_{t-1} +
  k_t v_t^T``) or DeltaNet (the delta rule with ``beta_t``), each head reading ``S_t^T q_t /
  sqrt(dk)``; input per head q, k, v (keys each) and the gate (g: keys units; beta: one).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsrl.builder import Program, concat, float_function, read

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def gated_program(channels: int):
    p = Program()
    x = p.input(2 * channels)
    p.output(p.gated_state(0, x[channels:], x[:channels]))
    return p.finish()


def recurrence_program(kind: str, heads: int, keys: int):
    """The input per token: per head q, k, v (keys each) and the gate (g: keys units; beta: one)."""
    gate = keys if kind == "gla" else 1
    per_head = 3 * keys + gate
    p = Program()
    x = p.input(heads * per_head)
    outputs = []
    for h in range(heads):
        base = h * per_head
        q, k, v = (x[base + i * keys:base + (i + 1) * keys] for i in range(3))
        g = x[base + 3 * keys:base + per_head]
        if kind == "gla":
            state = p.matrix_state(float_function("exp", g), k, v)
        else:
            state = p.delta_state(1, g, k, v)
        outputs.append(read(state, q * (1 / keys**0.5)))
    p.output(concat(outputs))
    return p.finish()


def gated_input(channels: int, batch: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """gated_program's input [batch, steps, 2 channels]: values standard normal, gates in (0.9, 1)."""
    return np.concatenate([rng.standard_normal((batch, steps, channels)),
                           rng.uniform(0.9, 1.0, (batch, steps, channels))], axis=-1).astype(np.float32)


def recurrence_input(kind: str, batch: int, steps: int, heads: int, keys: int, rng: np.random.Generator) -> np.ndarray:
    """recurrence_program's input [batch, steps, width], gates as the layers' own activations give them:
    GLA's log decays below 0 (its logsigmoid), DeltaNet's beta in (0, 1) and unit keys (sigmoid, l2norm)."""
    per_head = 3 * keys + (keys if kind == "gla" else 1)
    x = rng.standard_normal((batch, steps, heads * per_head)).astype(np.float32)
    per_head_view = x.reshape(batch, steps, heads, per_head)
    if kind == "gla":
        gates = per_head_view[..., 3 * keys:]
        gates[:] = -np.abs(gates) / 16
    else:
        per_head_view[..., 3 * keys] = 1 / (1 + np.exp(-per_head_view[..., 3 * keys]))
        k = per_head_view[..., keys:2 * keys]
        k /= np.linalg.norm(k, axis=-1, keepdims=True)
    return x


def split(x: np.ndarray, kind: str, heads: int, keys: int) -> tuple[np.ndarray, ...]:
    """q, k, v [B, T, H, K] and the gate ([B, T, H, K] or [B, T, H]) from the program's input, each contiguous."""
    per_head = x.reshape(*x.shape[:2], heads, -1)
    q, k, v = (per_head[..., i * keys:(i + 1) * keys] for i in range(3))
    g = per_head[..., 3 * keys:] if kind == "gla" else per_head[..., 3 * keys]
    return tuple(np.ascontiguousarray(a) for a in (q, k, v, g))


def fla_naive(package: str):
    """fla's ``naive.py`` of ``package``, loaded by path (importing ``fla.ops`` imports triton); None without fla-core."""
    spec = importlib.util.find_spec("fla")
    if spec is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / "ops" / package / "naive.py"
    loaded = importlib.util.spec_from_file_location(f"fla_naive_{package}", path)
    naive = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(naive)
    return naive


def jax_loop(kind: str, keys: int) -> Callable:
    """The recurrence written by hand as a jax.lax.scan over time on [B, H, K, V] states, jitted;
    takes split's q, k, v, g and returns [B, T, H, V]."""
    scale = 1 / keys**0.5

    def run(q, k, v, g):
        def one_step(s, step):
            q_t, k_t, v_t, g_t = step
            if kind == "gla":
                s = jnp.exp(g_t)[..., None] * s + k_t[..., None] * v_t[..., None, :]
            else:
                u = g_t[..., None] * (v_t - jnp.einsum("bhk,bhkv->bhv", k_t, s))
                s = s + k_t[..., None] * u[..., None, :]
            return s, jnp.einsum("bhk,bhkv->bhv", q_t * scale, s)

        batch, _, heads, _ = q.shape
        start = jnp.zeros((batch, heads, keys, v.shape[-1]), q.dtype)
        _, out = jax.lax.scan(one_step, start, tuple(jnp.swapaxes(a, 0, 1) for a in (q, k, v, g)))
        return jnp.swapaxes(out, 0, 1)

    return jax.jit(run)
