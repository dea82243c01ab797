"""Forward time of the recurrent, chunk and scan forms (docs/schedules.md) against sequence length:
the whole generated torch and jax ``forward`` beside the hand-written versions a user would
otherwise run, in one run, with the ratios.

    python benchmarks/schedules.py                 # T in 256, 1024: a few minutes
    python benchmarks/schedules.py --full          # T in 256, 1024, 4096, 16384
    python benchmarks/schedules.py --layers gla --lengths 4096 --chunk 64 --clock cpu

Three programs, each one state layer whose per-token operands are the program's input (so no
projection is timed on either side; benchmarks/layer_programs.py builds them), float32:

- ``gated``: ``h_t = a_t * h_{t-1} + v_t`` of 2048 channels (batch 1), gates in (0.9, 1); by hand,
  a torch loop, ``jax.lax.scan``, ``jax.lax.associative_scan`` and the chunk form as one writes it
  (each chunk's states from 0 and its gates' running products kept, then ``local + decay * start``)
  in torch and jax.
- ``gla``: GLA-shaped, batch 4, 4 heads, ``dk = dv = 64``, a log-decay per key; by hand, fla's
  ``naive_recurrent_gla`` (torch), ``jax.lax.scan``, ``jax.lax.associative_scan`` and the chunk
  form with log-decays as fla's kernels compute it (torch and jax; fla has no CPU reference of it).
- ``deltanet``: DeltaNet-shaped, the same sizes, unit keys, beta in (0, 1); by hand, fla's
  ``delta_rule_recurrence`` and ``delta_rule_chunkwise`` (torch), ``jax.lax.scan`` and a WY chunk
  form in jax.

Each program is compiled by ``lsrl.targets.compile_to(graph, target, Options(schedule=form,
chunk=C))`` and timed as a user runs it: torch ``module(compiled, "float32")(x)`` under
``torch.no_grad()``, jax ``jax.jit(model.forward)(model.params, x)``. The scan forms keep every
step's state (``T * dk * dv`` numbers per head), so for the matrix layers they run only up to
``--scan-limit`` steps. Each figure is the best of ``--repeat`` runs after a warm-up (jax: the
warm-up compiles); ``--clock cpu`` times the process's CPU time (steadier where other jobs share the
cores). ``diff``: the largest difference from the generated torch recurrent forward, relative to its
largest output. Then, per layer and target, the goals (the chunk form's speed-up over the loop;
each generated form against the best hand-written one of the same form), the crossovers
``--schedule auto`` uses (the shortest measured length from which the generated chunk forward
stays faster than the generated recurrent one: each target's ``crossovers``), and the roofline of the
GLA-shaped chunk form at the longest length on this machine (``roofline``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch
from layer_programs import (
    CLOCKS,
    fla_naive,
    gated_input,
    gated_program,
    jax_loop,
    recurrence_input,
    recurrence_program,
    split,
)
from lsrl.backends import Options
from lsrl.backends.jax_code import functions
from lsrl.backends.torch_code import module
from lsrl.ir.schedule import CHUNK, FORMS, RECURRENT, SCAN

from lsrl.targets import compile_to

QUICK, FULL = (256, 1024), (256, 1024, 4096, 16384)
CHANNELS, BATCH, HEADS, KEYS = 2048, 4, 4, 64
STATE_KIND = {"gated": "gated", "gla": "matrix", "deltanet": "delta"}
TARGETS = ("torch", "jax")


@dataclass(frozen=True)
class Run:
    """One timed computation of a layer: generated (a form's whole forward) or hand-written."""

    name: str
    target: str
    form: str
    call: Callable[[], object]
    hand: bool = False
    heads_first: bool = False  # the output is [batch, heads, time, dv] (fla's delta rule)


def best_seconds(call: Callable[[], object], repeat: int, clock: Callable[[], float],
                 budget: float = 20.0) -> tuple[float, object]:
    """The best of ``repeat`` runs after a warm-up (jax: compiles), and the warm-up's output."""
    output = call()
    best, spent = float("inf"), 0.0
    for _ in range(repeat):
        start = clock()
        call()
        seconds = clock() - start
        best, spent = min(best, seconds), spent + seconds
        if spent > budget:
            break
    return best, output


def flat_output(run: Run, output: object) -> np.ndarray:
    """A run's output as [batch, time, width] numbers (fla's functions return (output, state))."""
    output = output[0] if isinstance(output, tuple) else output
    array = np.asarray(output)
    if run.heads_first:
        array = array.swapaxes(1, 2)
    return array.reshape(*array.shape[:2], -1)


def jax_call(function: Callable, *args) -> Callable[[], object]:
    """A call of a jitted function that waits for its result."""
    return lambda: function(*args).block_until_ready()


# --- the generated forwards ----------------------------------------------------------------------------
def layer_program(layer: str):
    return gated_program(CHANNELS) if layer == "gated" else recurrence_program(layer, HEADS, KEYS)


def compiled_forwards(layer: str, chunk: int) -> dict[tuple[str, str], Callable]:
    """(target, form) -> the generated forward of the layer's program in that form, taking numpy
    input; prints the program's layer kinds and checks it has one state layer of the layer's kind."""
    graph = layer_program(layer)
    forwards: dict[tuple[str, str], Callable] = {}
    for form in FORMS:
        options = Options(schedule=form, chunk=chunk)
        compiled = compile_to(graph, "torch", options)
        kinds = [entry["kind"] for entry in compiled.config["layers"]]
        if form == RECURRENT:
            print(f"  the program's layers: {', '.join(kinds)}")
        states = [kind for kind in kinds if kind in ("state", *STATE_KIND.values())]
        assert states == [STATE_KIND[layer]], f"{layer} compiled to the state layers {states}"
        net = module(compiled, "float32")
        model = functions(compile_to(graph, "jax", options), "float32")
        forwards["torch", form] = partial(torch_forward, net)
        forwards["jax", form] = partial(jax_forward, jax.jit(model.forward), model.params)
    return forwards


def torch_forward(net: torch.nn.Module, x: np.ndarray) -> Callable[[], object]:
    xt = torch.from_numpy(x)
    return lambda: net(xt)


def jax_forward(forward: Callable, params: dict, x: np.ndarray) -> Callable[[], object]:
    return jax_call(forward, params, jnp.asarray(x))


# --- hand-written versions ------------------------------------------------------------------------------
def torch_gated_loop(v, a):
    h, out = torch.zeros_like(v[:, 0]), []
    for t in range(v.shape[1]):
        h = torch.addcmul(v[:, t], a[:, t], h)
        out.append(h)
    return torch.stack(out, dim=1)


def torch_gated_chunk(v, a, size):
    """The gated chunk form as one writes it by hand (time a multiple of size): every chunk's states
    from 0 and its gates' running products, all chunks at once, kept in two arrays; the chunks'
    start states one after the other; then local + decay * start, in place."""
    batch, time, width = v.shape
    v, a = (x.reshape(batch, time // size, size, width) for x in (v, a))
    local = torch.empty_like(v)
    local[:, :, 0] = v[:, :, 0]
    for i in range(1, size):
        torch.addcmul(v[:, :, i], a[:, :, i], local[:, :, i - 1], out=local[:, :, i])
    decay = torch.cumprod(a, dim=2)
    h, starts = v.new_zeros(batch, width), torch.empty_like(local[:, :, 0])
    for c in range(time // size):
        starts[:, c] = h
        h = torch.addcmul(local[:, c, -1], decay[:, c, -1], h)
    return local.addcmul_(decay, starts[:, :, None]).reshape(batch, time, width)


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


@partial(jax.jit, static_argnums=2)
def jax_gated_chunk(v, a, size):
    """torch_gated_chunk in JAX: one lax.scan over the steps of every chunk at once carries the
    states from 0 and the running products, a second over the chunks the start states."""
    batch, time, width = v.shape
    v, a = (jnp.moveaxis(x.reshape(batch, time // size, size, width), 2, 0) for x in (v, a))

    def inside(local_and_decay, step):
        local, decay = step[0] * local_and_decay[0] + step[1], step[0] * local_and_decay[1]
        return (local, decay), (local, decay)

    _, (local, decay) = jax.lax.scan(inside, (jnp.zeros_like(v[0]), jnp.ones_like(a[0])), (a, v))

    def across(h, chunk):
        return chunk[0] * h + chunk[1], h

    _, starts = jax.lax.scan(across, jnp.zeros((batch, width), v.dtype), (jnp.swapaxes(decay[-1], 0, 1),
                                                                          jnp.swapaxes(local[-1], 0, 1)))
    out = local + decay * jnp.swapaxes(starts, 0, 1)[None]
    return jnp.moveaxis(out, 0, 2).reshape(batch, time, width)


@jax.jit
def jax_gla_scan(q, k, v, g):
    states = jax.lax.associative_scan(lambda e, l: (l[0] * e[0], l[0] * e[1] + l[1]),
                                      (jnp.exp(g)[..., None], k[..., :, None] * v[..., None, :]), axis=1)[1]
    return jnp.einsum("bthk,bthkv->bthv", q / q.shape[-1] ** 0.5, states)


def torch_gla_chunk(q, k, v, g, size):
    """GLA's chunk form as fla's reference kernels compute it, by hand: cumulative log-decays from
    each chunk's start, G[t, j] = exp(b_t) exp(-b_j) (a quotient: fine for decays away from 0, not
    for the zeros of hold-or-overwrite registers), one matrix product for the scores; [batch, time,
    heads, n], time a multiple of size."""
    batch, time, heads, keys = q.shape
    q = q / keys ** 0.5
    q, k, v, g = (x.transpose(1, 2).reshape(batch, heads, time // size, size, -1) for x in (q, k, v, g))
    b = g.cumsum(-2)
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
def jax_gla_chunk(q, k, v, g, size):
    """torch_gla_chunk in JAX: the chunks' start states by a lax.scan over the chunks."""
    batch, time, heads, keys = q.shape
    q = q / keys ** 0.5
    q, k, v, g = (jnp.swapaxes(x, 1, 2).reshape(batch, heads, time // size, size, -1) for x in (q, k, v, g))
    b = jnp.cumsum(g, axis=-2)
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
def jax_delta_chunk(q, k, v, beta, size):
    """DeltaNet's chunk form (WY / UT, as fla's delta_rule_chunkwise) by hand in JAX: T by a
    triangular solve for all chunks, then a lax.scan over the chunks for U, the outputs and S."""
    batch, time, heads, keys = k.shape
    q = q / keys ** 0.5
    q, k, v, beta = (jnp.swapaxes(x, 1, 2).reshape(batch, heads, time // size, size, -1)
                     for x in (q, k, v, beta[..., None]))
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


def hand_runs(layer: str, x: np.ndarray, chunk: int, scan: bool) -> list[Run]:
    """The hand-written versions of the layer on the program's input x (split into its operands
    outside the timing); chunk forms only where chunk divides the length."""
    chunked = x.shape[1] % chunk == 0
    if layer == "gated":
        v, a = (np.ascontiguousarray(part) for part in (x[..., :CHANNELS], x[..., CHANNELS:]))
        tv, ta, jv, ja = torch.from_numpy(v), torch.from_numpy(a), jnp.asarray(v), jnp.asarray(a)
        runs = [Run("torch loop (hand)", "torch", RECURRENT, lambda: torch_gated_loop(tv, ta), True),
                Run("jax lax.scan (hand)", "jax", RECURRENT, jax_call(jax_gated_loop, jv, ja), True),
                Run("jax associative_scan (hand)", "jax", SCAN, jax_call(jax_gated_scan, jv, ja), True)]
        if chunked:
            runs += [Run("torch chunk (hand)", "torch", CHUNK, lambda: torch_gated_chunk(tv, ta, chunk), True),
                     Run("jax chunk (hand)", "jax", CHUNK, jax_call(jax_gated_chunk, jv, ja, chunk), True)]
        return runs
    operands = split(x, layer, HEADS, KEYS)
    t, j = [torch.from_numpy(part) for part in operands], [jnp.asarray(part) for part in operands]
    runs = [Run("jax lax.scan (hand)", "jax", RECURRENT, jax_call(jax_loop(layer, KEYS), *j), True)]
    if layer == "gla":
        gla = fla_naive("gla")
        if gla is not None:
            runs.append(Run("torch fla naive_recurrent_gla (hand)", "torch", RECURRENT,
                            lambda: gla.naive_recurrent_gla(*t), True))
        if chunked:
            runs += [Run("torch chunk, log-decays (hand)", "torch", CHUNK, lambda: torch_gla_chunk(*t, chunk), True),
                     Run("jax chunk, log-decays (hand)", "jax", CHUNK, jax_call(jax_gla_chunk, *j, chunk), True)]
        if scan:
            runs.append(Run("jax associative_scan (hand)", "jax", SCAN, jax_call(jax_gla_scan, *j), True))
        return runs
    delta = fla_naive("delta_rule")
    if delta is not None:
        heads_first = [part.transpose(1, 2).contiguous() for part in t]
        runs.append(Run("torch fla delta_rule_recurrence (hand)", "torch", RECURRENT,
                        lambda: delta.delta_rule_recurrence(*heads_first), True, True))
        if chunked:
            runs.append(Run("torch fla delta_rule_chunkwise (hand)", "torch", CHUNK,
                            lambda: delta.delta_rule_chunkwise(*heads_first, chunk), True, True))
    if chunked:
        runs.append(Run("jax chunk, WY (hand)", "jax", CHUNK, jax_call(jax_delta_chunk, *j, chunk), True))
    return runs


# --- the roofline of the GLA-shaped chunk form ----------------------------------------------------------
def matmul_seconds(batches: int, chunk: int, repeat: int, clock: Callable[[], float]) -> dict[str, float]:
    """Each target's time for the chunk form's products, [batches, C, dk] x [batches, dk, dv]."""
    rng = np.random.default_rng(1)
    left, right = (rng.standard_normal((batches, chunk, KEYS)).astype(np.float32) for _ in range(2))
    tl, tr, jl, jr = torch.from_numpy(left), torch.from_numpy(right), jnp.asarray(left), jnp.asarray(right)
    matmul = jax.jit(jnp.matmul)
    return {"torch": best_seconds(lambda: tl @ tr, repeat, clock)[0],
            "jax": best_seconds(lambda: matmul(jl, jr).block_until_ready(), repeat, clock)[0]}


def loop_step_seconds(steps: int, repeat: int, clock: Callable[[], float]) -> dict[str, float]:
    """Each target's time for steps GLA loop steps alone (decay, outer-product add, read of the
    [batch, heads, dk, dv] state), each step with its own operands."""
    rng = np.random.default_rng(2)
    s = rng.standard_normal((BATCH, HEADS, KEYS, KEYS)).astype(np.float32)
    d, k, v, q = (rng.standard_normal((steps, BATCH, HEADS, KEYS)).astype(np.float32) for _ in range(4))
    ts, td, tk, tv, tq = (torch.from_numpy(x) for x in (s, d, k, v, q))

    def torch_steps():
        state = ts
        for t in range(steps):
            state = torch.addcmul(state * td[t, ..., None], tk[t, ..., None], tv[t, ..., None, :])
            (tq[t, ..., None, :] @ state).squeeze(-2)

    def jax_step(state, step):
        d_t, k_t, v_t, q_t = step
        state = state * d_t[..., None] + k_t[..., None] * v_t[..., None, :]
        return state, jnp.einsum("bhk,bhkv->bhv", q_t, state)

    jax_steps = jax.jit(lambda state, *xs: jax.lax.scan(jax_step, state, xs)[1])
    js = tuple(jnp.asarray(x) for x in (s, d, k, v, q))
    return {"torch": best_seconds(torch_steps, repeat, clock)[0],
            "jax": best_seconds(lambda: jax_steps(*js).block_until_ready(), repeat, clock)[0]}


def roofline(length: int, chunk: int, loop_seconds: dict[str, float], chunk_seconds: dict[str, float],
             repeat: int, clock: Callable[[], float]) -> None:
    """The chunk form's matrix products run at the machine's matmul rate, the loop's steps at its
    elementwise rate; per head the loop does about 5 T dk dv flops (decay, outer-product add, read)
    and the chunk form 4 T dk dv + 4 T C dk (states in and out of the chunks; scores and their
    product with the values), so the chunk form is at most (matmul rate / loop rate) * (loop flops /
    chunk flops) times faster than the loop. ``loop_seconds``, ``chunk_seconds``: the generated GLA
    forwards at ``length`` per target (empty where GLA was not measured)."""
    batches, steps = BATCH * HEADS * (length // chunk), 64
    loop_flops, chunk_flops = 5 * length * KEYS * KEYS, 4 * length * KEYS * KEYS + 4 * length * chunk * KEYS
    matmuls, loop_steps = matmul_seconds(batches, chunk, repeat, clock), loop_step_seconds(steps, repeat, clock)
    print(f"\nroofline of the GLA-shaped chunk form at T={length}, C={chunk} (GFLOP/s; per head the loop "
          f"does 5 T dk dv = {loop_flops / 1e6:.0f} Mflop, the chunk form 4 T dk dv + 4 T C dk = "
          f"{chunk_flops / 1e6:.0f} Mflop: ratio {loop_flops / chunk_flops:.3f})")
    for target in TARGETS:
        matmul_rate = 2 * batches * chunk * KEYS * KEYS / matmuls[target] / 1e9
        step_rate = 5 * BATCH * HEADS * KEYS * KEYS * steps / loop_steps[target] / 1e9
        line = (f"  {target:5} matmul [{batches}, {chunk}, {KEYS}] x [{batches}, {KEYS}, {KEYS}] {matmul_rate:6.1f}; "
                f"loop steps alone {step_rate:5.1f}")
        if target in loop_seconds:
            loop_rate = BATCH * HEADS * loop_flops / loop_seconds[target] / 1e9
            bound = matmul_rate / loop_rate * loop_flops / chunk_flops
            line += (f"; the generated loop {loop_rate:5.1f}: chunk speed-up at most {bound:5.1f}x, "
                     f"measured {loop_seconds[target] / chunk_seconds[target]:5.2f}x")
        print(line)


# --- the runs and their tables --------------------------------------------------------------------------
def time_layer(layer: str, forwards: dict, length: int, args, rng: np.random.Generator,
               clock: Callable[[], float]) -> dict[str, tuple[Run, float]]:
    """name -> (run, seconds) for the layer at one length, the rows printed as they are measured."""
    if layer == "gated":
        x = gated_input(CHANNELS, 1, length, rng)
    else:
        x = recurrence_input(layer, BATCH, length, HEADS, KEYS, rng)
    scan = layer == "gated" or length <= args.scan_limit
    runs = [Run(f"{target} {form}", target, form, forwards[target, form](x))
            for form in FORMS if form != SCAN or scan for target in TARGETS]
    runs += hand_runs(layer, x, args.chunk, scan)
    timed: dict[str, tuple[Run, float]] = {}
    reference = None
    with torch.no_grad():
        for run in runs:
            seconds, output = best_seconds(run.call, args.repeat, clock)
            timed[run.name] = run, seconds
            output = flat_output(run, output)
            reference = output if reference is None else reference
            diff = np.abs(output - reference).max() / np.abs(reference).max()
            base = timed[f"{run.target} {RECURRENT}"][1]
            print(f"  T={length:<6} {run.name:<40} {seconds:9.4f} s  {base / seconds:6.2f}x  diff {diff:.1e}")
    return timed


def goals(layer: str, length: int, timed: dict[str, tuple[Run, float]]) -> list[str]:
    """Per target: the generated chunk form's speed-up over the generated loop, and each generated
    form against the fastest hand-written version of the same form."""
    lines = []
    for target in TARGETS:
        parts = [f"chunk {timed[f'{target} {RECURRENT}'][1] / timed[f'{target} {CHUNK}'][1]:.2f}x faster than the loop"]
        for form in FORMS:
            hand = [seconds for run, seconds in timed.values() if run.hand and run.target == target and run.form == form]
            if hand and f"{target} {form}" in timed:
                parts.append(f"{form} {timed[f'{target} {form}'][1] / min(hand):.2f}x of hand")
        lines.append(f"  {layer:<9} T={length:<6} {target:<5} " + ", ".join(parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help=f"lengths {FULL} (default {QUICK})")
    parser.add_argument("--lengths", type=lambda s: tuple(int(v) for v in s.split(",")), help="lengths, comma-separated")
    parser.add_argument("--layers", default="gated,gla,deltanet")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scan-limit", type=int, default=1024, help="the longest sequence the matrix layers' scans run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared machine more only wait for each other)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="wall time, or the process's CPU time (steadier where other jobs share the cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    lengths = args.lengths or (FULL if args.full else QUICK)
    rng = np.random.default_rng(0)
    crossovers: dict[tuple[str, str], int | None] = {}
    goal_lines: list[str] = []
    gla_longest: dict[str, tuple[Run, float]] = {}
    print(f"float32, CPU, {args.threads} torch threads, chunk {args.chunk}, {args.clock} time; seconds per forward "
          f"(best of {args.repeat}), speed-up over the generated recurrent forward of the same target")
    for layer in args.layers.split(","):
        print(f"\n{layer}")
        forwards = compiled_forwards(layer, args.chunk)
        faster: dict[str, list[int]] = {target: [] for target in TARGETS}
        for length in lengths:
            timed = time_layer(layer, forwards, length, args, rng, clock)
            goal_lines += goals(layer, length, timed)
            for target in TARGETS:
                if timed[f"{target} {CHUNK}"][1] < timed[f"{target} {RECURRENT}"][1]:
                    faster[target].append(length)
            if layer == "gla":
                gla_longest = timed
        for target in TARGETS:
            # the crossover: the shortest length from which the chunk form stays faster
            beaten = [n for n in lengths if all(m in faster[target] for m in lengths if m >= n)]
            crossovers[layer, target] = beaten[0] if beaten else None
    print("\ngoals (the chunk form >= 5x faster than the loop for the matrix layers; each generated form <= 1.2x of "
          "the fastest hand-written one):")
    print("\n".join(goal_lines))
    print("\ncrossover (the generated chunk forward faster from T =):")
    for (layer, target), length in crossovers.items():
        print(f"  {layer:<10} {target:<6} {length if length is not None else 'not within the lengths measured'}")
    loop_seconds = {target: gla_longest[f"{target} {RECURRENT}"][1] for target in TARGETS if gla_longest}
    chunk_seconds = {target: gla_longest[f"{target} {CHUNK}"][1] for target in TARGETS if gla_longest}
    roofline(max(lengths), args.chunk, loop_seconds, chunk_seconds, args.repeat, clock)


if __name__ == "__main__":
    main()
