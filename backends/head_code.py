"""The generated code of the layers whose heads keep matrix states (``matrix`` and ``delta``
layers, ``ir.heads``), shared by the ``torch`` and ``jax`` targets.

A layer's heads are grouped by shape (kind, decay width, keys, values, whether they read): the
heads of one group run together, as one loop over time on ``[batch, heads, keys, values]``
states, with one batched product per step for the update and one for the read. The generated
call passes each group as index lists into the layer's units ``u = W x + b``:

    (operands, query, out, state)

``operands``: per operand of the head (a matrix head's decay, key and value; a delta head's alpha,
beta, key and value), a ``[heads][n]`` list of unit positions; ``query``: a ``[heads][keys]``
list, or None where the heads emit their states; ``out``: the ``[heads][n]`` units the heads
fill; ``state``: the ``[heads][keys * values]`` positions of each head's state in the layer's
state (the heads' states one after the other, row by row), which ``step`` passes between tokens.

The generated helper ``state_heads(u, kind, groups, state)`` returns the layer's output and its
last state: it gathers each group's operands and puts back what ``group_heads(kind, parts, q, s)``
computes for the group (here for torch and jax; the triton target has its own ``group_heads``).
The jax and torch targets' ``forward`` (torch's where no tap is given) call ``group_heads``
themselves, with operands read where they were computed (``backends/sourced_forward.py``);
``state_heads`` serves ``step``, torch's ``forward_tapped`` and the triton target.
"""

from __future__ import annotations

from typing import Sequence

from lsrl.ir import heads
from lsrl.ir.layered import Layer
from lsrl.ir.schedule import RECURRENT, LayerPlan

Group = tuple[list[list[list[int]]], list[list[int]] | None, list[list[int]], list[list[int]]]


def _operand_runs(head: heads.MatrixHead | heads.DeltaHead) -> list[tuple[int, int]]:
    """(first unit, count) of each operand the head reads, in the order the helpers take them."""
    if isinstance(head, heads.MatrixHead):
        return [(head.decay, head.decays), (head.key, head.keys), (head.value, head.values)]
    return [(head.alpha, 1), (head.beta, 1), (head.key, head.keys), (head.value, head.values)]


def head_groups(layer: Layer, left_out: frozenset[int] = frozenset()) -> list[Group]:
    """The layer's heads grouped by shape, as index lists (see the module's docstring), without
    the heads whose first output unit is in ``left_out`` (their outputs stay ``u``; the state
    positions are then those of the heads kept: ``forward`` discards the last state)."""
    groups: dict[tuple, list[tuple[heads.Head, int]]] = {}
    offset = 0
    for head in heads.decode(layer.kind, layer.attrs["heads"]):
        if head.out in left_out:
            continue
        shape = (tuple(n for _, n in _operand_runs(head)), head.query == heads.NO_QUERY)
        groups.setdefault(shape, []).append((head, offset))
        offset += head.keys * head.values
    planned = []
    for members in groups.values():
        runs = [_operand_runs(head) for head, _ in members]
        operands = [[list(range(run[k][0], run[k][0] + run[k][1])) for run in runs] for k in range(len(runs[0]))]
        reads = members[0][0].query != heads.NO_QUERY
        query = [list(range(h.query, h.query + h.keys)) for h, _ in members] if reads else None
        out = [list(h.outputs) for h, _ in members]
        state = [list(range(start, start + h.keys * h.values)) for h, start in members]
        planned.append((operands, query, out, state))
    return planned


def call(layer: Layer, u: str, state: str | None, plan: LayerPlan | None = None) -> str:
    """The generated call of ``state_heads`` for the layer, on its units ``u``; it gives
    ``(output, last state)``, in the form of the layer's ``plan`` (``forward``; the recurrent form
    without one)."""
    form = f", {plan.form!r}, {plan.chunk}" if plan is not None and plan.form != RECURRENT else ""
    return f"state_heads({u}, {layer.kind!r}, {head_groups(layer)!r}, {state or 'None'}{form})"


def head_states(layers: Sequence[Layer]) -> dict[int, int]:
    """Per matrix or delta layer (by index): how many state entries its heads keep."""
    return {i: heads.state_size(layer.kind, layer.attrs["heads"]) for i, layer in enumerate(layers)
            if layer.kind in heads.STATE_HEADS}


# The torch-family helper in two parts: ``state_heads`` gathers each group's operands from the
# layer's units and puts back what ``group_heads`` computes; the triton target keeps the first part
# and runs its kernels in its own ``group_heads``.
STATE_HEADS_TORCH = '''
def state_heads(u, kind, groups, state=None, form="recurrent", size=0):
    """A matrix or delta layer: u = W x + b [batch, time, width], with its heads' units filled.
    Each group of heads of one shape (operands, query, out, state: index lists into u and the
    layer's state) runs through group_heads on S [batch, heads, keys, values], from the group's
    part of state (zeros before the first token). Returns the output and the last state."""
    x = u.clone()
    batch = u.shape[0]
    last = u.new_zeros(batch, sum(len(entries) for group in groups for entries in group[3]))
    for operands, query, out, entries in groups:
        parts = [u[..., torch.tensor(index, device=u.device)] for index in operands]  # [batch, time, heads, n]
        keys, values = len(operands[-2][0]), len(operands[-1][0])
        where = torch.tensor(entries, device=u.device).reshape(-1)
        s = (state[:, where] if state is not None else u.new_zeros(batch, where.numel())).reshape(batch, -1, keys, values)
        q = u[..., torch.tensor(query, device=u.device)] if query is not None else None
        emitted, s = group_heads(kind, parts, q, s, form, size)
        x[..., torch.tensor(out, device=u.device).reshape(-1)] = emitted.flatten(-2)
        last[:, where] = s.reshape(batch, -1)
    return x, last
'''

TORCH_HELPER = STATE_HEADS_TORCH + '''
def group_heads(kind, parts, q, s, form="recurrent", size=0):
    """Heads of one shape over the whole sequence: one loop over time (or in the chunk form of
    size steps, or the scan form: head_form) from S = s: a matrix head
    S_t = diag(d_t) S_{t-1} + k_t v_t^T (d one number or one per row), a delta head
    S_t = alpha S' + k (beta (v - (alpha S')^T k))^T, S' = S_{t-1}; each step emits q_t^T S_t
    where the heads have a query, else S_t row by row. parts (the operands) and q are
    [batch, time, heads, n] (views of the arrays they were computed in). Returns
    [batch, time, heads, n] and the last S."""
    if form != "recurrent":
        return head_form(kind, parts, q, s, form, size)
    batch, time, heads = parts[-1].shape[:3]
    keys, values = s.shape[-2:]

    def time_major(a):  # [time, batch * heads, n], contiguous: each step's operand is one block
        return a.transpose(0, 1).reshape(time, batch * heads, a.shape[-1])

    s = s.reshape(batch * heads, keys, values).clone()  # updated in place, step after step
    emitted = s.new_empty(time, batch * heads, values if q is not None else keys * values)
    reads = time_major(q).unsqueeze(-2) if q is not None else None  # [time, batch * heads, 1, keys]
    if kind == "matrix":
        d, k, v = (time_major(part) for part in parts)
        d, k, v = d.unsqueeze(-1), k.unsqueeze(-1), v.unsqueeze(-2)
        for t in range(time):
            s.mul_(d[t]).addcmul_(k[t], v[t])  # (an outer product: addcmul_ ran faster than baddbmm_)
            step_out(s, reads, emitted, t)
    else:
        alpha, beta, k, v = (time_major(part) for part in parts)
        # written = beta (v - S'^T k) = beta v - (beta k)^T S', S' = alpha S: one product per step
        scaled_k, scaled_v = (beta * k).unsqueeze(-2), (beta * v).unsqueeze(-2)
        alpha, k = alpha.unsqueeze(-1), k.unsqueeze(-1)
        written = s.new_empty(batch * heads, 1, values)
        for t in range(time):
            s.mul_(alpha[t])
            torch.baddbmm(scaled_v[t], scaled_k[t], s, alpha=-1, out=written)
            s.addcmul_(k[t], written)
            step_out(s, reads, emitted, t)
    shaped = emitted.reshape(time, batch, heads, -1).transpose(0, 1)
    return shaped, s.reshape(batch, heads, keys, values)


def step_out(s, reads, emitted, t):
    """What the heads emit at step t into emitted[t]: q_t^T S_t, or S_t row by row."""
    if reads is None:
        emitted[t] = s.flatten(-2)
    else:
        torch.bmm(reads[t], s, out=emitted[t].unsqueeze(-2))
'''

JAX_HELPER = '''
def state_heads(u, kind, groups, state=None, form="recurrent", size=0):
    """A matrix or delta layer: u = W x + b [batch, time, width], with its heads' units filled.
    Each group of heads of one shape (operands, query, out, state: index lists into u and the
    layer's state) runs through group_heads on S [batch, heads, keys, values], from the group's
    part of state (zeros before the first token). Returns the output and the last state."""
    x = u
    batch = u.shape[0]
    last = jnp.zeros((batch, sum(len(entries) for group in groups for entries in group[3])), u.dtype)
    for operands, query, out, entries in groups:
        parts = [u[..., np.array(index)] for index in operands]  # [batch, time, heads, n]
        q = u[..., np.array(query)] if query is not None else None
        keys, values = len(operands[-2][0]), len(operands[-1][0])
        where = np.array(entries).reshape(-1)
        start = (state[:, where] if state is not None else jnp.zeros((batch, where.size), u.dtype))
        emitted, s = group_heads(kind, parts, q, start.reshape(batch, -1, keys, values), form, size)
        # the emitted units put in place by a gather (XLA runs a scatter into x many times slower)
        order = np.arange(x.shape[-1])
        order[np.array(out).reshape(-1)] = x.shape[-1] + np.arange(np.size(out))
        x = jnp.concatenate([x, emitted.reshape(*emitted.shape[:2], -1)], axis=-1)[..., order]
        last = last.at[:, where].set(s.reshape(batch, -1))
    return x, last


def group_heads(kind, parts, q, s, form="recurrent", size=0):
    """Heads of one shape over the whole sequence: one scan over time (or in the chunk form of
    size steps, or the associative scan form: head_form) from S = s [batch, heads, keys, values]:
    a matrix head S_t = diag(d_t) S_{t-1} + k_t v_t^T (d one number or one per row), a delta head
    S_t = alpha S' + k (beta (v - (alpha S')^T k))^T, S' = S_{t-1}; each step emits q_t^T S_t
    where the heads have a query, else S_t row by row. parts (the operands) and q are
    [batch, time, heads, n]. Returns [batch, time, heads, n] and the last S."""
    if form != "recurrent":
        return head_form(kind, parts, q, s, form, size)
    operands = (*parts, *([] if q is None else [q]))

    def one_step(s, t):
        # each step's operands taken in the loop: no copy of the operands with time first
        step = [jax.lax.dynamic_index_in_dim(operand, t, axis=1, keepdims=False) for operand in operands]
        if kind == "matrix":
            d, k, v = step[:3]
            s = d[..., None] * s + k[..., :, None] * v[..., None, :]
        else:
            alpha, beta, k, v = step[:4]
            # (alpha S')^T k as alpha (S'^T k): XLA then passes over S once per step, not twice
            written = beta * (v - alpha * jnp.einsum("bhk,bhkv->bhv", k, s, precision=HIGHEST))
            s = alpha[..., None] * s + k[..., :, None] * written[..., None, :]
        if q is None:
            return s, s.reshape(*s.shape[:2], -1)
        return s, jnp.einsum("bhk,bhkv->bhv", step[-1], s, precision=HIGHEST)

    s, emitted = jax.lax.scan(one_step, s, jnp.arange(parts[0].shape[1]))
    return jnp.swapaxes(emitted, 0, 1), s
'''
