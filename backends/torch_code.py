"""The ``torch`` target: a generated, self-contained PyTorch ``model.py`` (see docs/target-torch-jax.md).

The file defines ``Model`` (an ``nn.Module``): ``forward(x)`` maps a batch of whole sequences
``[batch, time, d_in] -> [batch, time, d_out]`` layer by layer (state layers without a loop over
time where their structure allows, see ``backends/codegen.py``), and ``init_state(batch)`` /
``step(x_t, state)`` give the same outputs token by token. ``load(directory, dtype, device)``
builds it from ``model.safetensors`` (float64 weights ``layers.{i}.{W,b,...}``, the names of the
module's ``state_dict``), cast to ``dtype``. The file imports only torch, safetensors and pathlib.

From Python, without writing files: ``module(compiled, dtype, device)`` executes the generated
source and returns the module with the compiled weights.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from lsrl.backends import codegen, head_code, head_forms, mesa_code, sourced_forward
from lsrl.backends.target import Compiled, Options, Target
from lsrl.ir.layered import LayeredModel
from lsrl.ir.schedule import SCHEDULES, Plan

HELPERS = {
    "previous": '''
def previous(h, init):
    """h one step back in time: init at the first step, then h[:, t - 1]."""
    return torch.cat([init.expand(h.shape[0], 1, -1), h[:, :-1]], dim=1)
''',
    "delay_lines": '''
def delay_lines(v, N, init, depth):
    """h_t = N h_{t-1} + v_t from h_0 = init, where N holds chains of reads at most depth long
    (delay lines, shift registers) and no cycle: each round of h = v + N previous(h) makes one
    more link of every chain exact, so depth rounds give h, with no loop over time."""
    h = v
    for _ in range(depth):
        h = v + F.linear(previous(h, init), N)
    return h
''',
    "running_sum": '''
def running_sum(v, init):
    """h_t = h_{t-1} + v_t from h_0 = init: a cumulative sum over time."""
    return init + torch.cumsum(v, dim=1)
''',
    "rotation": '''
def rotation(v, cycles, init):
    """h_t = P h_{t-1} + v_t from h_0 = init, for a permutation P given by its cycles: the unit
    cycle[k] takes the previous value of cycle[k + 1], the last one that of cycle[0].

    Read in the frame that turns with P (unit i at step t relabelled by P^-t), h only adds up v:
    a cumulative sum, no loop over time, and exact, since P only moves values around.
    """
    time, width = v.shape[1], v.shape[-1]
    steps = torch.arange(time, device=v.device)[:, None]
    # ahead[t, i]: the unit whose value P^t brings to unit i; behind[t, i]: the same for P^-t
    ahead = torch.empty(time, width, dtype=torch.long, device=v.device)
    behind = torch.empty_like(ahead)
    successor = torch.empty(width, dtype=torch.long, device=v.device)
    for cycle in cycles:
        members = torch.tensor(cycle, device=v.device)
        position = torch.arange(len(cycle), device=v.device)
        ahead[:, members] = members[(position + steps) % len(cycle)]
        behind[:, members] = members[(position - steps) % len(cycle)]
        successor[members] = members.roll(-1)
    turning = init[successor] + torch.cumsum(v[:, steps, behind], dim=1)
    return turning[:, steps, ahead]
''',
    "scaled_recurrence": '''
def scaled_recurrence(v, a, init):
    """h_t = a * h_{t-1} + v_t from h_0 = init (a diagonal transition): a loop over time."""
    h = init.expand(v.shape[0], -1)
    steps = []
    for v_t in v.unbind(dim=1):
        h = torch.addcmul(v_t, a, h)
        steps.append(h)
    return torch.stack(steps, dim=1)
''',
    "gated_recurrence": '''
def gated_recurrence(v, a, init):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init, elementwise, a_t varying with t: a loop over time."""
    h = init.expand(v.shape[0], -1)
    steps = []
    for v_t, a_t in zip(v.unbind(dim=1), a.unbind(dim=1)):
        h = torch.addcmul(v_t, a_t, h)
        steps.append(h)
    return torch.stack(steps, dim=1)
''',
    "heads_layer": '''
def heads_layer(u, kind, heads, shift=None, steps=0):
    """A solve layer: u = W x + b [batch, time, width], with each head's units filled: a solve
    head (matrix, size, query, out) (M + diag(shift))^-1 q, directly (steps 0) or by steps
    conjugate-gradient steps."""
    x = u.clone()
    for h in range(0, len(heads), 4):
        matrix, n, query, out = heads[h:h + 4]
        a = u[..., matrix:matrix + n * n].reshape(*u.shape[:-1], n, n) + torch.diag(shift[out:out + n])
        q = u[..., query:query + n]
        x[..., out:out + n] = solve_system(a, q, steps)
    return x


def solve_system(a, q, steps):
    """a^-1 q: directly (steps 0), or by steps conjugate-gradient steps from 0 (a symmetric positive definite)."""
    if steps == 0:
        return torch.linalg.solve(a, q.unsqueeze(-1)).squeeze(-1)
    return conjugate_gradient(lambda p: (a @ p.unsqueeze(-1)).squeeze(-1), q, steps)


def conjugate_gradient(apply, q, steps):
    """steps conjugate-gradient steps from 0 on A x = q, apply(p) = A p (A symmetric positive definite)."""
    x, r = torch.zeros_like(q), q.clone()
    p, rr = r.clone(), (r * r).sum(-1)
    for _ in range(steps):
        ap = apply(p)
        alpha = torch.where(rr > 0, rr / (p * ap).sum(-1), torch.zeros_like(rr))
        x, r = x + alpha.unsqueeze(-1) * p, r - alpha.unsqueeze(-1) * ap
        following = (r * r).sum(-1)
        p = r + torch.where(rr > 0, following / rr, torch.zeros_like(rr)).unsqueeze(-1) * p
        rr = following
    return x
''',
    "chunks": '''
def chunks(x, size, fill=0.0):
    """[batch, time, ...] -> [batch, time / size, size, ...], the last chunk padded with fill
    (padding follows every real step, so it changes none of them)."""
    pad = -x.shape[1] % size
    if pad:
        x = torch.cat([x, x.new_full((x.shape[0], pad, *x.shape[2:]), fill)], dim=1)
    return x.reshape(x.shape[0], -1, size, *x.shape[2:])
''',
    "gated_chunk": '''
def gated_chunk(v, a, init, size):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init, elementwise, by chunks of size steps (ir/forms.py):
    every chunk's last state from 0 and the product of its gates (never a quotient: gates may be 0),
    all chunks at once (size steps), then the chunks' start states one after the other (time / size
    steps), then every chunk again from its start state, all chunks at once (size steps), into one
    output."""
    batch, time, width = v.shape
    a = chunks(a.expand(v.shape), size, 1.0)
    v = chunks(v, size)
    last, decay = v[:, :, 0].clone(), a[:, :, 0].clone()
    for i in range(1, size):
        torch.addcmul(v[:, :, i], a[:, :, i], last, out=last)
        decay.mul_(a[:, :, i])
    starts, h = torch.empty_like(last), init.expand(batch, width)
    for c in range(v.shape[1]):
        starts[:, c] = h
        h = torch.addcmul(last[:, c], decay[:, c], h)
    out, h = v.new_empty(v.shape), starts
    for i in range(size):
        h = torch.addcmul(v[:, :, i], a[:, :, i], h, out=out[:, :, i])
    return out.reshape(batch, -1, width)[:, :time]
''',
    "matrix_chunk": '''
def matrix_chunk(v, A, init, size):
    """h_t = A h_{t-1} + v_t from h_0 = init by chunks of size steps: every chunk from 0 at once,
    the chunks' start states one after the other, then local_i + A^i start."""
    time = v.shape[1]
    v = chunks(v, size)
    powers = [A]
    for _ in range(1, size):
        powers.append(A @ powers[-1])
    powers = torch.stack(powers)
    local = [v[:, :, 0]]
    for i in range(1, size):
        local.append(v[:, :, i] + F.linear(local[-1], A))
    local = torch.stack(local, dim=2)
    h, starts = init.expand(v.shape[0], -1), []
    for c in range(v.shape[1]):
        starts.append(h)
        h = local[:, c, -1] + F.linear(h, powers[-1])
    out = local + torch.einsum("bcm,inm->bcin", torch.stack(starts, dim=1), powers)
    return out.reshape(v.shape[0], -1, v.shape[-1])[:, :time]
''',
    "associative_scan": '''
def associative_scan(combine, elements):
    """The prefixes e_t o ... o e_1 over axis 1 of a tuple of tensors, combine(earlier, later)
    associative: neighbours paired, the pairs scanned, the rest filled in (work-efficient:
    O(time) combines in 2 log(time) rounds)."""
    time = elements[0].shape[1]
    if time < 2:
        return elements
    pairs = time // 2
    paired = combine(tuple(e[:, 0:2 * pairs:2] for e in elements), tuple(e[:, 1:2 * pairs:2] for e in elements))
    odd = associative_scan(combine, paired)
    even = combine(tuple(o[:, :(time - 1) // 2] for o in odd), tuple(e[:, 2::2] for e in elements))
    out = []
    for e, o, r in zip(elements, odd, even):
        whole = torch.empty(e.shape, dtype=o.dtype, device=o.device)
        whole[:, 0], whole[:, 1::2], whole[:, 2::2] = e[:, 0], o, r
        out.append(whole)
    return tuple(out)


def gated_combine(earlier, later):
    return later[0] * earlier[0], torch.addcmul(later[1], later[0], earlier[1])


def matrix_combine(earlier, later):
    return later[0] @ earlier[0], later[0] @ earlier[1] + later[1]
''',
    "gated_scan": '''
def gated_scan(v, a, init):
    """h_t = a_t * h_{t-1} + v_t from h_0 = init, elementwise: the associative scan of (a_t, v_t),
    the first step taking a_1 init in."""
    a = a.expand(v.shape)
    first = torch.addcmul(v[:, :1], a[:, :1], init)
    return associative_scan(gated_combine, (a, torch.cat([first, v[:, 1:]], dim=1)))[1]
''',
    "matrix_scan": '''
def matrix_scan(v, A, init):
    """h_t = A h_{t-1} + v_t from h_0 = init: the associative scan of (A, v_t); each combine is a
    product of n x n matrices (n^3)."""
    batch, time, n = v.shape
    first = v[:, :1] + F.linear(init, A)
    b = torch.cat([first.expand(batch, 1, n), v[:, 1:]], dim=1)[..., None]
    return associative_scan(matrix_combine, (A.expand(batch, time, n, n), b))[1][..., 0]
''',
    "head_forms": head_forms.TORCH,
    "state_heads": head_code.TORCH_HELPER,
    "solve_chunk": mesa_code.TORCH_HELPER,
    "matrix_recurrence": '''
def matrix_recurrence(v, A, init):
    """h_t = A h_{t-1} + v_t from h_0 = init: a loop over time of batched matrix products."""
    h = init.expand(v.shape[0], -1)
    steps = []
    for v_t in v.unbind(dim=1):
        h = torch.addmm(v_t, h, A.T)
        steps.append(h)
    return torch.stack(steps, dim=1)
''',
}


TORCH_FUNCTIONS = {
    "exp": "torch.exp", "log": "torch.log", "sigmoid": "torch.sigmoid", "softplus": "F.softplus",
    "silu": "F.silu", "tanh": "torch.tanh", "sqrt": "torch.sqrt", "rsqrt": "torch.rsqrt",
}


class TorchSyntax(codegen.Syntax):
    def bind_layer(self, index: int) -> str:
        return f"layer = self.layers[{index}]"

    def tap(self, index: int) -> str:  # (in forward_tapped: forward runs that only where a tap is given)
        return f"x = tap({index}, x)"

    def weight(self, name: str) -> str:
        return f"layer.{name}"

    def linear(self, x: str, weight: str, bias: str | None = None) -> str:
        return f"F.linear({x}, {weight}, {bias})" if bias else f"F.linear({x}, {weight})"

    def relu(self, x: str) -> str:
        return f"torch.relu({x})"

    def function(self, name: str, x: str) -> str:
        return f"{TORCH_FUNCTIONS[name]}({x})"

    def index_list(self, units: Sequence[int]) -> str:
        # torch reads a plain list of lists as one index per axis: a table of positions is a tensor
        return str(list(units)) if all(isinstance(u, int) for u in units) else f"torch.tensor({list(units)})"

    def concat(self, arrays: Sequence[str]) -> str:
        return arrays[0] if len(arrays) == 1 else f"torch.cat([{', '.join(arrays)}], dim=-1)"

    def zeros(self, shape: str) -> str:
        return f"x.new_zeros({shape})"

    def reverse(self, array: str) -> str:
        return f"{array}.flip(-1)"


def generate_source(
    model: LayeredModel, plan: Plan, helpers: Mapping[str, str] = HELPERS, target: str = "torch",
    needs: str = "torch and safetensors", preamble: str = "", syntax: codegen.Syntax | None = None,
) -> str:
    """The text of ``model.py`` for ``model``, its state layers in the forms of ``plan``: the
    ``torch`` target's, or (``target``, ``helpers``, ``preamble``: code after the imports,
    ``syntax``: a subclass of ``TorchSyntax``) a target that replaces some helpers or layers by its
    own (``triton``)."""
    syntax = syntax or TorchSyntax()
    d_in, d_out = model.d_in, model.d_out
    header = "\n".join([
        f"A program compiled by lsrl for PyTorch (target {target}): a recurrent model, one token per step.",
        "",
        *codegen.model_summary(model, plan),
        "",
        f"Usage, from this directory (needs {needs}):",
        "",
        "    import torch, model",
        "    net = model.load(\".\", dtype=torch.float32)  # or torch.float64; device=\"cuda\"",
        f"    y = net(x)                          # x: [batch, time, {d_in}] -> y: [batch, time, {d_out}]",
        "    state = net.init_state(batch)       # or token by token, the same outputs:",
        f"    y_t, state = net.step(x_t, state)   # x_t: [batch, {d_in}] -> y_t: [batch, {d_out}]",
        "",
        *codegen.LAYER_KINDS_TEXT,
        "The weights (float64 in model.safetensors, cast to dtype when loaded) are parameters",
        "named layers.{i}.{W,b,...}, with requires_grad off. config.json holds the program's",
        "parameters and the labels of every unit. This file is generated: edit the program and",
        f"compile it again (lsrl compile PROGRAM --target {target} -o DIR).",
    ])
    layers = ",\n".join(f"    {entry!r}" for entry in codegen.layer_table(model))
    forward = codegen.indent(sourced_forward.forward_lines(model, plan, syntax), 8)
    tapped = codegen.indent(codegen.forward_lines(model, plan, syntax), 8)
    step = codegen.indent(codegen.step_lines(model, syntax), 8)
    used = [name for name in codegen.helpers_used(model, plan) if name in helpers]
    helpers_text = "".join(f"\n\n{helpers[name].strip()}\n" for name in used)
    return f'''{codegen.docstring(header)}

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
{preamble}
D_IN = {d_in}
D_OUT = {d_out}
# (kind, input width, width) of every layer, in order
LAYERS = [
{layers},
]
STATE_LAYERS = {codegen.state_layer_indices(model)}  # the layers that pass a state from token to token
HEAD_STATES = {head_code.head_states(model.layers)}  # per matrix or delta layer: its heads' state entries


def load(directory=".", dtype=torch.float32, device="cpu"):
    """The model with the weights of DIRECTORY/model.safetensors, cast to dtype."""
    return from_tensors(load_file(str(Path(directory) / "model.safetensors")), dtype, device)


def from_tensors(tensors, dtype=torch.float32, device="cpu"):
    """The model with the given weights ({{"layers.0.W": tensor, ...}}), cast to dtype."""
    model = Model()
    model.load_state_dict(tensors)
    return model.to(dtype=dtype, device=device)


def weight_shapes(kind, d_in, width):
    shapes = {{"W": (width, d_in), "b": (width,)}}
    if kind in ("gate", "gated"):
        shapes.update(W2=(width, d_in), b2=(width,))
    if kind == "state":
        shapes.update(A=(width, width), init=(width,))
    if kind == "gated":
        shapes.update(init=(width,))
    if kind == "solve":
        shapes.update(shift=(width,))
    return shapes
{helpers_text}

class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList()
        for kind, d_in, width in LAYERS:
            layer = torch.nn.Module()
            for name, shape in weight_shapes(kind, d_in, width).items():
                zeros = torch.zeros(shape, dtype=torch.float64)
                layer.register_parameter(name, torch.nn.Parameter(zeros, requires_grad=False))
            self.layers.append(layer)

    def forward(self, x, tap=None):
        """[batch, time, D_IN] -> [batch, time, D_OUT]: every layer over the whole sequences.
        ``tap(layer, x)``, where given, receives each layer's output [batch, time, width] (the unit
        labels of config.json say what each unit holds) and returns what the next layer reads."""
        x = x.to(self.layers[0].W)
        if tap is not None:
            return self.forward_tapped(x, tap)
        # every unit read where it was computed: picks and head operands are slices, not gathers
{forward}
        return x

    def forward_tapped(self, x, tap):
        """forward with tap(layer, x) after every layer: each layer's units as one array."""
{tapped}
        return x

    def init_state(self, batch=1):
        """The state before the first token: one [batch, n] tensor per state layer (n: its width, or
        its heads' state entries)."""
        return [self.layers[i].W.new_zeros(batch, HEAD_STATES[i]) if i in HEAD_STATES
                else self.layers[i].init.expand(batch, -1).clone() for i in STATE_LAYERS]

    def step(self, x, state):
        """One token: x [batch, D_IN] and the state after the previous token -> (y [batch, D_OUT], new state)."""
        x = x.to(self.layers[0].W)
{step}
        return x, new_state
'''


def module(compiled: Compiled, dtype: str | torch.dtype = "float32", device: str = "cpu") -> torch.nn.Module:
    """The generated module of ``compiled`` (its ``model.py``, executed beside the other Python files
    it loads: the ``triton`` target's ``kernels.py``) with its weights in ``dtype``."""
    beside = {name: text for name, text in compiled.files.items() if name.endswith(".py") and name != "model.py"}
    generated = codegen.import_generated(compiled.files["model.py"], beside)
    tensors = {name: torch.tensor(value, dtype=torch.float64) for name, value in compiled.tensors.items()}
    return generated.from_tensors(tensors, getattr(torch, dtype) if isinstance(dtype, str) else dtype, device)


class TorchTarget(Target):
    name = "torch"
    description = "a generated PyTorch module (model.py): forward over whole sequences, step token by token"
    native_gates = True
    layer_kinds = (*Target.layer_kinds, "map", "gated", "matrix", "delta", "solve")
    schedules = SCHEDULES
    # the whole generated forward on a CPU (benchmarks/schedules.py, docs/schedules.md): the chunked
    # gated and GLA-shaped layers faster from 1024 steps, the chunked delta rule from 4096
    crossovers = {"gated": 1024, "matrix": 1024, "delta": 4096}

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        return codegen.build_code_target(self, model, options, generate_source)

    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        net = module(compiled, dtype)
        with torch.no_grad():
            return net(torch.from_numpy(np.asarray(inputs, dtype=np.float64))).double().numpy()


TARGETS = {"torch": TorchTarget()}
