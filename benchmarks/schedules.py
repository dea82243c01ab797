"""Forward time of the recurrent, chunk and scan forms (docs/schedules.md) against sequence length,
generated torch and jax code beside the hand-written versions a user would otherwise run.

    python3 benchmarks/schedules.py            # T in 64, 256, 1024: a few minutes
    python3 benchmarks/schedules.py --full     # T in 64, 256, 1024, 4096, 16384
    python3 benchmarks/schedules.py --layers gla --lengths 4096 --chunk 64

Three layers, float32, batch 4 for the matrix layers and 1 for the gated one, the recurrence only
(the layer's input term ``W x + b`` is given: it is the same matrix product in every form):

- ``gated``: a gated diagonal layer ``h_t = a_t * h_{t-1} + b_t`` of 2048 channels, gates in
  (0.9, 1): the generated ``gated_recurrence``, ``gated_chunk``, ``gated_scan``; by hand, a torch
  loop, ``jax.lax.scan`` and ``jax.lax.associative_scan``.
- ``gla``: a matrix layer of 4 heads, ``dk = dv = 64``, a decay per key in (0.9, 1) (GLA), each
  head reading ``q_t^T S_t``: the generated ``state_heads`` in each form, and the chunk form
  alone (``head_form`` on operands already per head); by hand, fla's ``naive_recurrent_gla``
  (torch), ``jax.lax.scan``, ``jax.lax.associative_scan`` and the chunk form with log-decays as
  fla's kernels compute it (torch and jax; fla has no CPU reference of it).
- ``deltanet``: a delta layer of 4 heads, ``dk = dv = 64``, unit keys, beta in (0, 1), reading
  ``q_t^T S_t``: the generated code in each form and the chunk form alone; by hand, fla's
  ``delta_rule_recurrence`` and ``delta_rule_chunkwise`` (torch), ``jax.lax.scan`` and a WY
  chunk form in jax.

The scan forms keep every step's state (``T * dk * dv`` numbers per head; the delta rule's also a
``dk x dk`` transition per step), so for the matrix layers they run only up to ``--scan-limit``
steps. Each figure is the best of ``--repeat`` runs after a warm-up (jax: the warm-up compiles).
The last table gives, per layer and target, the shortest measured length from which the chunk form
stays faster than the recurrent one: the crossovers ``--schedule auto`` uses (each target's
``crossovers``).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch
from lsrl.backends import Options, get_target
from lsrl.backends.codegen import import_generated
from lsrl.backends.head_code import head_groups
from lsrl.ir.graph import Label
from lsrl.ir.heads import DeltaHead, MatrixHead, encode
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import exact
from lsrl.ir.schedule import CHUNK, FORMS, RECURRENT, SCAN
from lsrl.passes.schedule import schedule

QUICK, FULL = (64, 256, 1024), (64, 256, 1024, 4096, 16384)
CHANNELS, BATCH, HEADS, KEYS = 2048, 4, 4, 64


def best_seconds(run: Callable[[], object], repeat: int, budget: float = 20.0) -> float:
    run()
    best, spent = float("inf"), 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        best, spent = min(best, seconds), spent + seconds
        if spent > budget:
            break
    return best


def ready(x):
    return x.block_until_ready() if hasattr(x, "block_until_ready") else x


# --- the layers as layered models, compiled in each form ------------------------------------------------
def labels(name: str, n: int) -> tuple:
    return tuple(UnitLabel(Label(name, i)) for i in range(n))


def gated_model() -> LayeredModel:
    zero = (exact(0),) * CHANNELS
    layer = Layer("gated", {"W": Matrix(CHANNELS, 1), "b": zero, "W2": Matrix(CHANNELS, 1), "b2": zero, "init": zero},
                  labels("h", CHANNELS))
    return LayeredModel(1, [layer], [Label("x", 0)], [Label("h", i) for i in range(CHANNELS)])


def head_model(kind: str) -> LayeredModel:
    """4 heads reading q^T S: each head's operands (decays or alpha and beta, key, value, query)
    one after the other, then the 4 reads."""
    first = KEYS if kind == "matrix" else 2
    block = first + 3 * KEYS
    heads = []
    for h in range(HEADS):
        base, out = h * block, HEADS * block + h * KEYS
        if kind == "matrix":
            heads.append(MatrixHead(base, KEYS, base + first, KEYS, base + first + KEYS, KEYS, base + first + 2 * KEYS, out))
        else:
            heads.append(DeltaHead(base, base + 1, base + first, KEYS, base + first + KEYS, KEYS, base + first + 2 * KEYS, out))
    width = HEADS * (block + KEYS)
    layer = Layer(kind, {"W": Matrix(width, 1), "b": (exact(0),) * width, "heads": encode(heads)}, labels("u", width))
    return LayeredModel(1, [layer], [Label("x", 0)], [Label("u", i) for i in range(width)])


def generated(model: LayeredModel, target: str, form: str, chunk: int):
    """The generated model.py of ``target`` for the model in ``form``, as a module (its helpers)."""
    return import_generated(get_target(target).build(model, replace(Options(), plan=schedule(model, form, chunk))).files["model.py"])


# --- inputs ---------------------------------------------------------------------------------------------
def gated_inputs(length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return (rng.standard_normal((1, length, CHANNELS)).astype(np.float32),
            rng.uniform(0.9, 1.0, (1, length, CHANNELS)).astype(np.float32))


def head_units(kind: str, length: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The layer's units u [batch, time, width] and the same operands per head [batch, time, heads, n]."""
    q, k, v = (rng.standard_normal((BATCH, length, HEADS, KEYS)).astype(np.float32) / 8 for _ in range(3))
    parts = {"q": q, "v": v}
    if kind == "matrix":
        parts["k"], parts["d"] = k, rng.uniform(0.9, 1.0, (BATCH, length, HEADS, KEYS)).astype(np.float32)
        blocks = [parts["d"], k, v, q]
    else:
        parts["k"] = k / np.linalg.norm(k, axis=-1, keepdims=True)
        parts["alpha"] = np.ones((BATCH, length, HEADS, 1), np.float32)
        parts["beta"] = rng.uniform(0.0, 1.0, (BATCH, length, HEADS, 1)).astype(np.float32)
        blocks = [parts["alpha"], parts["beta"], parts["k"], v, q]
    operands = np.concatenate(blocks, axis=-1).reshape(BATCH, length, -1)
    u = np.concatenate([operands, np.zeros((BATCH, length, HEADS * KEYS), np.float32)], axis=-1)
    return u, parts


# --- hand-written versions ------------------------------------------------------------------------------
def torch_gated_loop(v, a):
    h, out = torch.zeros_like(v[:, 0]), []
    for t in range(v.shape[1]):
        h = a[:, t] * h + v[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


@jax.jit
def jax_gated_loop(v, a):
    def one(h, x):
        h = x[1] * h + x[0]
        return h, h

    _, out = jax.lax.scan(one, jnp.zeros_like(v[:, 0]), (jnp.swapaxes(v, 0, 1), jnp.swapaxes(a, 0, 1)))
    return jnp.swapaxes(out, 0, 1)


@jax.jit
def jax_gated_scan(v, a):
    return jax.lax.associative_scan(lambda e, l: (l[0] * e[0], l[0] * e[1] + l[1]), (a, v), axis=1)[1]


@jax.jit
def jax_gla_loop(d, k, v, q):
    def one(s, x):
        d_t, k_t, v_t, q_t = x
        s = d_t[..., None] * s + k_t[..., :, None] * v_t[..., None, :]
        return s, jnp.einsum("bhk,bhkv->bhv", q_t, s)

    _, out = jax.lax.scan(one, jnp.zeros((*k.shape[:1], *k.shape[2:], v.shape[-1]), k.dtype),
                          tuple(jnp.swapaxes(x, 0, 1) for x in (d, k, v, q)))
    return jnp.swapaxes(out, 0, 1)


@jax.jit
def jax_gla_scan(d, k, v, q):
    states = jax.lax.associative_scan(lambda e, l: (l[0] * e[0], l[0] * e[1] + l[1]),
                                      (d[..., None], k[..., :, None] * v[..., None, :]), axis=1)[1]
    return jnp.einsum("bthk,bthkv->bthv", q, states)


@jax.jit
def jax_delta_loop(beta, k, v, q):
    def one(s, x):
        b_t, k_t, v_t, q_t = x
        u = b_t * (v_t - jnp.einsum("bhk,bhkv->bhv", k_t, s))
        s = s + k_t[..., :, None] * u[..., None, :]
        return s, jnp.einsum("bhk,bhkv->bhv", q_t, s)

    _, out = jax.lax.scan(one, jnp.zeros((*k.shape[:1], *k.shape[2:], v.shape[-1]), k.dtype),
                          tuple(jnp.swapaxes(x, 0, 1) for x in (beta, k, v, q)))
    return jnp.swapaxes(out, 0, 1)


def torch_gla_chunk(q, k, v, d, size):
    """GLA's chunk form as fla's reference kernels compute it, by hand: cumulative log-decays from
    each chunk's start, G[t, j] = exp(b_t) exp(-b_j) (a quotient: fine for decays away from 0, not
    for the zeros of hold-or-overwrite registers), one matrix product for the scores; [batch, time,
    heads, n], time a multiple of size."""
    batch, time, heads, keys = q.shape
    q, k, v, d = (x.transpose(1, 2).reshape(batch, heads, time // size, size, -1) for x in (q, k, v, d))
    b = torch.log(d).cumsum(-2)
    reads, writes = q * b.exp(), k * (-b).exp()
    scores = (reads @ writes.transpose(-1, -2)).tril()
    written = (k * (b[..., -1:, :] - b).exp()).transpose(-1, -2) @ v
    last = b[..., -1, :].exp()
    s, starts = q.new_zeros(batch, heads, keys, v.shape[-1]), []
    for c in range(time // size):
        starts.append(s)
        s = last[:, :, c, :, None] * s + written[:, :, c]
    out = scores @ v + reads @ torch.stack(starts, dim=2)
    return out.reshape(batch, heads, time, -1).transpose(1, 2)


@partial(jax.jit, static_argnums=4)
def jax_gla_chunk(q, k, v, d, size):
    """torch_gla_chunk in JAX: the chunks' start states by a lax.scan over the chunks."""
    batch, time, heads, keys = q.shape
    q, k, v, d = (jnp.swapaxes(x, 1, 2).reshape(batch, heads, time // size, size, -1) for x in (q, k, v, d))
    b = jnp.cumsum(jnp.log(d), axis=-2)
    reads, writes = q * jnp.exp(b), k * jnp.exp(-b)
    scores = jnp.tril(reads @ jnp.swapaxes(writes, -1, -2))
    written = jnp.swapaxes(k * jnp.exp(b[..., -1:, :] - b), -1, -2) @ v
    last = jnp.exp(b[..., -1, :])

    def one(s, x):
        return x[0][..., None] * s + x[1], s

    _, starts = jax.lax.scan(one, jnp.zeros((batch, heads, keys, v.shape[-1]), q.dtype),
                             (jnp.moveaxis(last, 2, 0), jnp.moveaxis(written, 2, 0)))
    out = scores @ v + reads @ jnp.moveaxis(starts, 0, 2)
    return jnp.swapaxes(out.reshape(batch, heads, time, -1), 1, 2)


@partial(jax.jit, static_argnums=4)
def jax_delta_chunk(beta, k, v, q, size):
    """DeltaNet's chunk form (WY / UT, as fla's delta_rule_chunkwise) by hand in JAX: T by a
    triangular solve for all chunks, then a lax.scan over the chunks for U, the outputs and S."""
    batch, time, heads, keys = k.shape
    beta, k, v, q = (jnp.swapaxes(x, 1, 2).reshape(batch, heads, time // size, size, -1) for x in (beta, k, v, q))
    eye = jnp.eye(size, dtype=k.dtype)
    lower = jnp.tril(beta * (k @ jnp.swapaxes(k, -1, -2)), -1)
    t = jax.lax.linalg.triangular_solve(eye + lower, beta * eye, left_side=True, lower=True, unit_diagonal=True)
    written_v, written_k = t @ v, t @ k
    scores = jnp.tril(q @ jnp.swapaxes(k, -1, -2))

    def one(s, x):
        w_v, w_k, k_c, q_c, p = x
        u = w_v - w_k @ s
        return s + jnp.swapaxes(k_c, -1, -2) @ u, q_c @ s + p @ u

    _, out = jax.lax.scan(one, jnp.zeros((batch, heads, keys, v.shape[-1]), k.dtype),
                          tuple(jnp.moveaxis(x, 2, 0) for x in (written_v, written_k, k, q, scores)))
    return jnp.swapaxes(jnp.moveaxis(out, 0, 2).reshape(batch, heads, time, -1), 1, 2)


def fla_naive(package: str):
    """fla's ``naive.py`` of ``package``, loaded by path (importing ``fla.ops`` imports triton); None without fla-core."""
    spec = importlib.util.find_spec("fla")
    if spec is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / "ops" / package / "naive.py"
    module_spec = importlib.util.spec_from_file_location(f"fla_naive_{package}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


# --- the runs -------------------------------------------------------------------------------------------
def runs(layer: str, length: int, chunk: int, scan_limit: int, rng: np.random.Generator) -> dict[str, Callable]:
    """name -> a function that computes the layer once (generated forms and hand-written versions)."""
    out: dict[str, Callable] = {}
    forms = [f for f in FORMS if f != SCAN or layer == "gated" or length <= scan_limit]
    if layer == "gated":
        v, a = gated_inputs(length, rng)
        tv, ta, init = torch.from_numpy(v), torch.from_numpy(a), torch.zeros(CHANNELS)
        jv, ja, jinit = jnp.asarray(v), jnp.asarray(a), jnp.zeros(CHANNELS, jnp.float32)
        helper = {RECURRENT: "gated_recurrence", CHUNK: "gated_chunk", SCAN: "gated_scan"}
        for form in forms:
            extra = (chunk,) if form == CHUNK else ()
            t_fn = getattr(generated(gated_model(), "torch", form, chunk), helper[form])
            j_fn = jax.jit(lambda v, a, i, f=getattr(generated(gated_model(), "jax", form, chunk), helper[form]), e=extra: f(v, a, i, *e))
            out[f"torch {form}"] = lambda f=t_fn, e=extra: f(tv, ta, init, *e)
            out[f"jax {form}"] = lambda f=j_fn: ready(f(jv, ja, jinit))
        out["torch loop (hand)"] = lambda: torch_gated_loop(tv, ta)
        out["jax lax.scan (hand)"] = lambda: ready(jax_gated_loop(jv, ja))
        out["jax associative_scan (hand)"] = lambda: ready(jax_gated_scan(jv, ja))
        return out
    kind = "matrix" if layer == "gla" else "delta"
    model = head_model(kind)
    groups = head_groups(model.layers[0])
    u, parts = head_units(kind, length, rng)
    tu, ju = torch.from_numpy(u), jnp.asarray(u)
    t = {name: torch.from_numpy(x) for name, x in parts.items()}
    j = {name: jnp.asarray(x) for name, x in parts.items()}
    operands = ["d", "k", "v"] if kind == "matrix" else ["alpha", "beta", "k", "v"]
    for form in forms:
        extra = (form, chunk) if form != RECURRENT else ()
        t_mod, j_mod = generated(model, "torch", form, chunk), generated(model, "jax", form, chunk)
        j_fn = jax.jit(lambda u, m=j_mod, e=extra: m.state_heads(u, kind, groups, None, *e)[0])
        out[f"torch {form}"] = lambda m=t_mod, e=extra: m.state_heads(tu, kind, groups, None, *e)
        out[f"jax {form}"] = lambda f=j_fn: ready(f(ju))
        if form != SCAN:  # the form alone (group_heads), on operands already per head, as the hand-written
            # versions get them and as the jax forward passes them (backends/sourced_forward.py)
            t_start, j_start = torch.zeros(BATCH, HEADS, KEYS, KEYS), jnp.zeros((BATCH, HEADS, KEYS, KEYS), jnp.float32)
            j_form = jax.jit(lambda *x, m=j_mod, f=form: m.group_heads(kind, list(x[:-1]), x[-1], j_start, f, chunk)[0])
            out[f"torch {form}, the form alone"] = lambda m=t_mod, f=form: m.group_heads(
                kind, [t[name] for name in operands], t["q"], t_start, f, chunk)
            out[f"jax {form}, the form alone"] = lambda f=j_form: ready(f(*(j[name] for name in operands), j["q"]))
    if kind == "matrix":
        gla = fla_naive("gla")
        if gla is not None:
            log_decay = torch.log(t["d"])
            out["torch fla naive_recurrent_gla (hand)"] = lambda: gla.naive_recurrent_gla(t["q"], t["k"], t["v"], log_decay)
        out["jax lax.scan (hand)"] = lambda: ready(jax_gla_loop(j["d"], j["k"], j["v"], j["q"]))
        if length % chunk == 0:
            out["torch chunk, log-decays (hand)"] = lambda: torch_gla_chunk(t["q"], t["k"], t["v"], t["d"], chunk)
            out["jax chunk, log-decays (hand)"] = lambda: ready(jax_gla_chunk(j["q"], j["k"], j["v"], j["d"], chunk))
        if length <= scan_limit:
            out["jax associative_scan (hand)"] = lambda: ready(jax_gla_scan(j["d"], j["k"], j["v"], j["q"]))
        return out
    delta = fla_naive("delta_rule")
    if delta is not None:
        heads_first = {name: x.transpose(1, 2) for name, x in t.items()}
        beta = heads_first["beta"][..., 0]
        out["torch fla delta_rule_recurrence (hand)"] = lambda: delta.delta_rule_recurrence(
            heads_first["q"], heads_first["k"], heads_first["v"], beta)
        if length % chunk == 0:
            out["torch fla delta_rule_chunkwise (hand)"] = lambda: delta.delta_rule_chunkwise(
                heads_first["q"], heads_first["k"], heads_first["v"], beta, chunk)
    out["jax lax.scan (hand)"] = lambda: ready(jax_delta_loop(j["beta"], j["k"], j["v"], j["q"]))
    if length % chunk == 0:
        out["jax chunk, WY (hand)"] = lambda: ready(jax_delta_chunk(j["beta"], j["k"], j["v"], j["q"], chunk))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help=f"lengths {FULL} (default {QUICK})")
    parser.add_argument("--lengths", type=lambda s: tuple(int(v) for v in s.split(",")), help="lengths, comma-separated")
    parser.add_argument("--layers", default="gated,gla,deltanet")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scan-limit", type=int, default=1024, help="the longest sequence the matrix layers' scans run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared machine more only wait for each other)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = args.lengths or (FULL if args.full else QUICK)
    rng = np.random.default_rng(0)
    crossovers: dict[tuple[str, str], int | None] = {}
    print(f"float32, CPU, {args.threads} threads, chunk {args.chunk}; seconds per forward (best of {args.repeat}), "
          "ratio to the generated recurrent form of the same target")
    for layer in args.layers.split(","):
        print(f"\n{layer}")
        faster: dict[str, list[int]] = {"torch": [], "jax": []}
        if layer != "gated":
            faster |= {"torch, the form alone": [], "jax, the form alone": []}
        for length in lengths:
            with torch.no_grad():
                timed = {name: best_seconds(run, args.repeat) for name, run in runs(layer, length, args.chunk,
                                                                                    args.scan_limit, rng).items()}
            for name, seconds in timed.items():
                target = name.split()[0]
                base = timed[f"{target} {RECURRENT}"]
                print(f"  T={length:<6} {name:<42} {seconds:10.4f} s  {base / seconds:6.2f}x")
            for target in faster:
                alone = ", the form alone" if target.endswith("alone") else ""
                name = target.split(",")[0]
                if f"{name} {CHUNK}{alone}" in timed and timed[f"{name} {CHUNK}{alone}"] < timed[f"{name} {RECURRENT}{alone}"]:
                    faster[target].append(length)
        for target in faster:
            # the crossover: the shortest length from which the chunk form stays faster
            beaten = [n for n in lengths if all(m in faster[target] for m in lengths if m >= n)]
            crossovers[layer, target] = beaten[0] if beaten else None
    print("\ncrossover (the chunk form faster from T =):")
    for (layer, target), length in crossovers.items():
        print(f"  {layer:<10} {target:<22} {length if length is not None else 'not within the lengths measured'}")


if __name__ == "__main__":
    main()
