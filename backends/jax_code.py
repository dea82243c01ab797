"""The ``jax`` target: a generated, self-contained JAX ``model.py`` (see docs/target-torch-jax.md).

The file defines pure functions over a parameter pytree ``{"layers": [{"W": ..., "b": ...}, ...]}``:
``forward(params, x)`` maps a batch of whole sequences ``[batch, time, d_in] -> [batch, time,
d_out]`` layer by layer (state layers without a loop over time where their structure allows, else
``jax.lax.scan``; see ``backends/codegen.py``), and ``init_state(params, batch)`` /
``step(params, x_t, state)`` give the same outputs token by token. All three can be
``jax.jit``-ed. ``load_params(directory, dtype)`` reads ``model.safetensors`` (float64 weights
``layers.{i}.{W,b,...}``) and casts them to ``dtype``; asking for float64 turns on JAX's 64-bit
mode (``jax_enable_x64``) for the process, without which JAX computes in float32. The file
imports only jax, numpy, safetensors and pathlib.

From Python, without writing files: ``functions(compiled, dtype)`` executes the generated source
and returns its functions with the compiled parameters.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np
from lsrl.backends import codegen, head_code, head_forms, mesa_code, sourced_forward
from lsrl.backends.target import Compiled, Options, Target
from lsrl.ir.layered import LayeredModel
from lsrl.ir.schedule import SCHEDULES, Plan

HELPERS = {
    "previous": '''
def previous(h, init):
    """h one step back in time: init at the first step, then h[:, t - 1]."""
    first = jnp.broadcast_to(init, (h.shape[0], 1, h.shape[-1]))
    return jnp.concatenate([first, h[:, :-1]], axis=1)
''',
    "delay_lines": '''
def delay_lines(v, N, init, depth):
    """h_t = N h_{t-1} + v_t from h_0 = init, where N holds chains of reads at most depth long
    (delay lines, shift registers) and no cycle: each round of h = v + N previous(h) makes one
    more link of every chain exact, so depth rounds give h, with no loop over time."""
    h = v
    for _ in range(depth):
        h = v + linear(previous(h, init), N)
    return h
''',
    "running_sum": '''
def running_sum(v, init):
    """h_t = h_{t-1} + v_t from h_0 = init: a cumulative sum over time."""
    return init + jnp.cumsum(v, axis=1)
''',
    "rotation": '''
def rotation(v, cycles, init):
    """h_t = P h_{t-1} + v_t from h_0 = init, for a permutation P given by its cycles: the unit
    cycle[k] takes the previous value of cycle[k + 1], the last one that of cycle[0].

    Read in the frame that turns with P (unit i at step t relabelled by P^-t), h only adds up v:
    a cumulative sum, no loop over time, and exact, since P only moves values around. The index
    tables depend only on the sequence length, so they are numpy constants under jit.
    """
    time, width = v.shape[1], v.shape[-1]
    steps = np.arange(time)[:, None]
    # ahead[t, i]: the unit whose value P^t brings to unit i; behind[t, i]: the same for P^-t
    ahead = np.empty((time, width), dtype=np.int32)
    behind = np.empty_like(ahead)
    successor = np.empty(width, dtype=np.int32)
    for cycle in cycles:
        members = np.array(cycle)
        position = np.arange(len(cycle))
        ahead[:, members] = members[(position + steps) % len(cycle)]
        behind[:, members] = members[(position - steps) % len(cycle)]
        successor[members] = np.roll(members, -1)
    turning = init[successor] + jnp.cumsum(v[:, steps, behind], axis=1)
    return turning[:, steps, ahead]
''',
    "scaled_recurrence": '''
def scaled_recurrence(v, a, init):
    """h_t = a * h_{t-1} + v_t from h_0 = init (a diagonal transition): a scan over time."""

    def one_step(h, v_t):
        h = a * h + v_t
        return h, h

    start = jnp.broadcast_to(init, (v.shape[0], v.shape[-1]))
    _, steps = jax.lax.scan(one_step, start, jnp.swapaxes(v, 0, 1))
    return jnp.swapaxes(steps, 0, 1)
''',
    "gated_recurrence": '''
def gated_recurrence(v, a, init):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init, elementwise, a_t varying with t: a scan over time."""

    def one_step(h, a_and_v):
        a_t, v_t = a_and_v
        h = a_t * h + v_t
        return h, h

    start = jnp.broadcast_to(init, (v.shape[0], v.shape[-1]))
    _, steps = jax.lax.scan(one_step, start, (jnp.swapaxes(a, 0, 1), jnp.swapaxes(v, 0, 1)))
    return jnp.swapaxes(steps, 0, 1)
''',
    "heads_layer": '''
def heads_layer(u, kind, heads, shift=None, steps=0):
    """A solve layer: u = W x + b [batch, time, width], with each head's units filled: a solve
    head (matrix, size, query, out) (M + diag(shift))^-1 q, directly (steps 0) or by steps
    conjugate-gradient steps."""
    x = u
    for h in range(0, len(heads), 4):
        matrix, n, query, out = heads[h:h + 4]
        a = u[..., matrix:matrix + n * n].reshape(*u.shape[:-1], n, n) + jnp.diag(shift[out:out + n])
        x = x.at[..., out:out + n].set(solve_system(a, u[..., query:query + n], steps))
    return x


def solve_system(a, q, steps):
    """a^-1 q: directly (steps 0), or by steps conjugate-gradient steps from 0 (a symmetric positive definite)."""
    if steps == 0:
        return jnp.linalg.solve(a, q[..., None])[..., 0]
    return conjugate_gradient(lambda p: jnp.einsum("...ij,...j->...i", a, p, precision=HIGHEST), q, steps)


def conjugate_gradient(apply, q, steps):
    """steps conjugate-gradient steps from 0 on A x = q, apply(p) = A p (A symmetric positive definite)."""
    x, r = jnp.zeros_like(q), q
    p, rr = r, (r * r).sum(-1)
    for _ in range(steps):
        ap = apply(p)
        alpha = jnp.where(rr > 0, rr / (p * ap).sum(-1), 0.0)
        x, r = x + alpha[..., None] * p, r - alpha[..., None] * ap
        following = (r * r).sum(-1)
        p = r + jnp.where(rr > 0, following / rr, 0.0)[..., None] * p
        rr = following
    return x
''',
    "chunks": '''
def chunks(x, size, fill=0.0):
    """[batch, time, ...] -> [batch, time / size, size, ...], the last chunk padded with fill
    (padding follows every real step, so it changes none of them)."""
    pad = -x.shape[1] % size
    if pad:
        x = jnp.concatenate([x, jnp.full((x.shape[0], pad, *x.shape[2:]), fill, x.dtype)], axis=1)
    return x.reshape(x.shape[0], -1, size, *x.shape[2:])


def over_axis(one_step, start, xs, axis):
    """jax.lax.scan of one_step over the given axis of every array of xs, outputs stacked back there."""
    _, ys = jax.lax.scan(one_step, start, jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, axis, 0), xs))
    return jnp.moveaxis(ys, 0, axis)
''',
    "gated_chunk": '''
def gated_chunk(v, a, init, size):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init, elementwise, by chunks of size steps (ir/forms.py):
    every chunk's last state from 0 and the product of its gates (never a quotient: gates may be 0),
    all chunks at once (a scan of size steps), then the chunks' start states one after the other
    (time / size), then every chunk again from its start state, all chunks at once (size steps)."""
    batch, time, width = v.shape
    a = chunks(jnp.broadcast_to(a, v.shape), size, 1.0)
    v = chunks(v, size)
    steps = (jnp.moveaxis(a, 2, 0), jnp.moveaxis(v, 2, 0))

    def ends(last_and_decay, step):
        (last, decay), (a_i, v_i) = last_and_decay, step
        return (a_i * last + v_i, a_i * decay), None

    (last, decay), _ = jax.lax.scan(ends, (jnp.zeros_like(v[:, :, 0]), jnp.ones_like(a[:, :, 0])), steps)

    def across(h, chunk):
        return chunk[0] * h + chunk[1], h

    starts = over_axis(across, jnp.broadcast_to(init, (batch, width)), (decay, last), 1)

    def inside(h, step):
        h = step[0] * h + step[1]
        return h, h

    _, out = jax.lax.scan(inside, starts, steps)
    return jnp.moveaxis(out, 0, 2).reshape(batch, -1, width)[:, :time]
''',
    "matrix_chunk": '''
def matrix_chunk(v, A, init, size):
    """h_t = A h_{t-1} + v_t from h_0 = init by chunks of size steps: every chunk from 0 at once,
    the chunks' start states one after the other, then local_i + A^i start."""
    time = v.shape[1]
    v = chunks(v, size)
    powers = [A]
    for _ in range(1, size):
        powers.append(jnp.matmul(A, powers[-1], precision=HIGHEST))
    powers = jnp.stack(powers)

    def inside(h, v_i):
        h = linear(h, A) + v_i
        return h, h

    local = over_axis(inside, jnp.zeros_like(v[:, :, 0]), v, 2)

    def across(h, last):
        return last + linear(h, powers[-1]), h

    start = jnp.broadcast_to(init, (v.shape[0], v.shape[-1]))
    starts = over_axis(across, start, local[:, :, -1], 1)
    out = local + jnp.einsum("bcm,inm->bcin", starts, powers, precision=HIGHEST)
    return out.reshape(v.shape[0], -1, v.shape[-1])[:, :time]
''',
    "associative_scan": '''
def gated_combine(earlier, later):
    return later[0] * earlier[0], later[0] * earlier[1] + later[1]


def matrix_combine(earlier, later):
    return (jnp.matmul(later[0], earlier[0], precision=HIGHEST),
            jnp.matmul(later[0], earlier[1], precision=HIGHEST) + later[1])
''',
    "gated_scan": '''
def gated_scan(v, a, init):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init, elementwise: jax.lax.associative_scan of
    (a_t, v_t), the first step taking a_1 init in."""
    a = jnp.broadcast_to(a, v.shape)
    v = v.at[:, 0].set(a[:, 0] * init + v[:, 0])
    return jax.lax.associative_scan(gated_combine, (a, v), axis=1)[1]
''',
    "matrix_scan": '''
def matrix_scan(v, A, init):
    """h_t = A h_{t-1} + v_t from h_0 = init: jax.lax.associative_scan of (A, v_t); each combine
    is a product of n x n matrices (n^3)."""
    batch, time, n = v.shape
    v = v.at[:, 0].set(v[:, 0] + linear(init, A))
    pairs = (jnp.broadcast_to(A, (batch, time, n, n)), v[..., None])
    return jax.lax.associative_scan(matrix_combine, pairs, axis=1)[1][..., 0]
''',
    "head_forms": head_forms.JAX,
    "state_heads": head_code.JAX_HELPER,
    "solve_chunk": mesa_code.JAX_HELPER,
    "matrix_recurrence": '''
def matrix_recurrence(v, A, init):
    """h_t = A h_{t-1} + v_t from h_0 = init: a scan over time of batched matrix products."""

    def one_step(h, v_t):
        h = linear(h, A) + v_t
        return h, h

    start = jnp.broadcast_to(init, (v.shape[0], v.shape[-1]))
    _, steps = jax.lax.scan(one_step, start, jnp.swapaxes(v, 0, 1))
    return jnp.swapaxes(steps, 0, 1)
''',
}


JAX_FUNCTIONS = {
    "exp": "jnp.exp", "log": "jnp.log", "sigmoid": "jax.nn.sigmoid", "softplus": "jax.nn.softplus",
    "silu": "jax.nn.silu", "tanh": "jnp.tanh", "sqrt": "jnp.sqrt", "rsqrt": "jax.lax.rsqrt",
}


class JaxSyntax(codegen.Syntax):
    def bind_layer(self, index: int) -> str:
        return f'layer = params["layers"][{index}]'

    def weight(self, name: str) -> str:
        return f'layer["{name}"]'

    def linear(self, x: str, weight: str, bias: str | None = None) -> str:
        return f"linear({x}, {weight}, {bias})" if bias else f"linear({x}, {weight})"

    def relu(self, x: str) -> str:
        return f"jax.nn.relu({x})"

    def function(self, name: str, x: str) -> str:
        return f"{JAX_FUNCTIONS[name]}({x})"

    def index_list(self, units: Sequence[int]) -> str:
        return f"np.array({list(units)})"  # jax takes index arrays, not lists

    def concat(self, arrays: Sequence[str]) -> str:
        return arrays[0] if len(arrays) == 1 else f"jnp.concatenate([{', '.join(arrays)}], axis=-1)"

    def zeros(self, shape: str) -> str:
        return f"jnp.zeros(({shape}), x.dtype)"

    def reverse(self, array: str) -> str:
        return f"{array}[..., ::-1]"


def generate_source(model: LayeredModel, plan: Plan) -> str:
    """The text of ``model.py`` for ``model``, its state layers in the forms of ``plan``."""
    syntax = JaxSyntax()
    d_in, d_out = model.d_in, model.d_out
    header = "\n".join([
        "A program compiled by lsrl for JAX (target jax): a recurrent model, one token per step.",
        "",
        *codegen.model_summary(model, plan),
        "",
        "Usage, from this directory (needs jax and safetensors):",
        "",
        "    import jax, model",
        "    params = model.load_params(\".\", \"float32\")  # \"float64\" turns on jax_enable_x64",
        "    forward, step = jax.jit(model.forward), jax.jit(model.step)",
        f"    y = forward(params, x)                   # x: [batch, time, {d_in}] -> y: [batch, time, {d_out}]",
        "    state = model.init_state(params, batch)  # or token by token, the same outputs:",
        f"    y_t, state = step(params, x_t, state)    # x_t: [batch, {d_in}] -> y_t: [batch, {d_out}]",
        "",
        *codegen.LAYER_KINDS_TEXT,
        "The parameters are a pytree {\"layers\": [{\"W\": ..., \"b\": ...}, ...]}; the weights are",
        "float64 in model.safetensors (layers.{i}.{W,b,...}), cast to dtype when loaded. float64",
        "needs JAX's 64-bit mode: load_params turns jax_enable_x64 on when asked for float64 (it",
        "must be on before float64 arrays are made). Matrix products ask for the highest precision,",
        "so float32 stays float32 on GPUs and TPUs. config.json holds the program's parameters and",
        "the labels of every unit. This file is generated: edit the program and compile it again",
        "(lsrl compile PROGRAM --target jax -o DIR).",
    ])
    layers = ",\n".join(f"    {entry!r}" for entry in codegen.layer_table(model))
    forward = codegen.indent(sourced_forward.forward_lines(model, plan, syntax), 4)
    step = codegen.indent(codegen.step_lines(model, syntax), 4)
    helpers = "".join(f"\n\n{HELPERS[name].strip()}\n" for name in codegen.helpers_used(model, plan))
    # numpy builds index arrays (constants under jit); a model that needs none does not import it
    numpy = "import numpy as np\n" if re.search(r"\bnp\.", helpers + forward) else ""
    return f'''{codegen.docstring(header)}

from pathlib import Path

import jax
import jax.numpy as jnp
{numpy}from safetensors.numpy import load_file

D_IN = {d_in}
D_OUT = {d_out}
# (kind, input width, width) of every layer, in order
LAYERS = [
{layers},
]
STATE_LAYERS = {codegen.state_layer_indices(model)}  # the layers that pass a state from token to token
HEAD_STATES = {head_code.head_states(model.layers)}  # per matrix or delta layer: its heads' state entries
HIGHEST = jax.lax.Precision.HIGHEST


def load_params(directory=".", dtype="float32"):
    """The parameters in DIRECTORY/model.safetensors, cast to dtype ("float32" or "float64")."""
    return to_params(load_file(str(Path(directory) / "model.safetensors")), dtype)


def to_params(arrays, dtype="float32"):
    """The parameter pytree from the weights {{"layers.0.W": array, ...}}, cast to dtype."""
    if jnp.dtype(dtype) == jnp.float64:
        jax.config.update("jax_enable_x64", True)  # without it, JAX silently makes float32 arrays
    layers = [{{}} for _ in LAYERS]
    for name, value in arrays.items():
        _, index, weight = name.split(".")
        layers[int(index)][weight] = jnp.asarray(value, dtype=dtype)
    return {{"layers": layers}}


def linear(x, W, b=None):
    """x W^T (+ b) over the last axis of x, at full precision."""
    y = jnp.matmul(x, W.T, precision=HIGHEST)
    return y if b is None else y + b
{helpers}

def forward(params, x):
    """[batch, time, D_IN] -> [batch, time, D_OUT]: every layer over the whole sequences."""
    x = jnp.asarray(x, dtype=params["layers"][0]["W"].dtype)
{forward}
    return x


def init_state(params, batch=1):
    """The state before the first token: one [batch, n] array per state layer (n: its width, or
    its heads' state entries)."""
    return [jnp.zeros((batch, HEAD_STATES[i]), params["layers"][i]["W"].dtype) if i in HEAD_STATES
            else jnp.broadcast_to(params["layers"][i]["init"], (batch, LAYERS[i][2])) for i in STATE_LAYERS]


def step(params, x, state):
    """One token: x [batch, D_IN] and the state after the previous token -> (y [batch, D_OUT], new state)."""
    x = jnp.asarray(x, dtype=params["layers"][0]["W"].dtype)
{step}
    return x, new_state
'''


class JaxModel(NamedTuple):
    """The generated functions of a compiled model and its parameters."""

    params: dict[str, Any]
    forward: Callable  # (params, x) -> y
    init_state: Callable  # (params, batch) -> state
    step: Callable  # (params, x_t, state) -> (y_t, state)


def functions(compiled: Compiled, dtype: str = "float32") -> JaxModel:
    """The generated functions of ``compiled`` (its ``model.py``, executed) and its parameters in
    ``dtype`` (float64 turns on ``jax_enable_x64``)."""
    generated = codegen.import_generated(compiled.files["model.py"])
    params = generated.to_params(compiled.tensors, dtype)
    return JaxModel(params, generated.forward, generated.init_state, generated.step)


class JaxTarget(Target):
    name = "jax"
    description = "generated JAX functions (model.py): forward over whole sequences, step token by token"
    native_gates = True
    layer_kinds = (*Target.layer_kinds, "map", "gated", "matrix", "delta", "solve")
    schedules = SCHEDULES
    # measured on a CPU (benchmarks/schedules.py, docs/schedules.md, "the form alone": the heads
    # as forward runs them since backends/sourced_forward.py): the recurrent form of every kind was
    # faster than its chunk form up to 16384 steps
    crossovers: dict[str, int] = {}

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        return codegen.build_code_target(self, model, options, generate_source)

    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        # jit, as users run it: op by op, JAX compiles every operation for every new shape anyway,
        # which is many times slower than compiling the whole forward once
        model = functions(compiled, dtype)
        return np.asarray(jax.jit(model.forward)(model.params, inputs), dtype=np.float64)


TARGETS = {"jax": JaxTarget()}
