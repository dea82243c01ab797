"""Mesa's chunk form in the generated ``torch`` and ``jax`` code (docs/schedules.md).

A solve layer whose solve heads solve, unit for unit, the states of matrix heads without a query
of the layer before it (``ir.heads.solved_states``: Mesa's ``solve(H, q)`` over ``H =
matrix_state(...)``), that layer being planned in the chunk form, solves those heads by chunks
from the matrix heads' operands, which the matrix layer passes on among its units
(``solve_chunk``, the generated counterpart of ``ir.forms.solve_chunk``). The matrix layer's
``forward`` then leaves those heads out: their states, ``n^2`` numbers per step and head, are
never written. Where ``forward`` is given a ``tap`` (torch), which sees every unit of every layer,
the matrix layer computes them all the same.
"""

from __future__ import annotations

from lsrl.ir import heads
from lsrl.ir.layered import LayeredModel
from lsrl.ir.schedule import CHUNK, Plan


def solved(model: LayeredModel, plan: Plan, index: int) -> dict[int, heads.MatrixHead]:
    """The solve heads of layer ``index`` (by position) that its code solves by chunks, with the
    matrix heads of the layer before whose states they solve; empty for any other layer."""
    layer = model.layers[index]
    if layer.kind != "solve" or index == 0 or not any(p.layer == index - 1 and p.form == CHUNK for p in plan.layers):
        return {}
    before = model.layers[index - 1]
    return heads.solved_states(before.kind, before.attrs, layer.attrs)


def left_out(model: LayeredModel, plan: Plan, index: int) -> frozenset[int]:
    """The heads of layer ``index`` (by their first output unit) that its ``forward`` may leave out:
    the next layer solves their states by chunks."""
    if index + 1 == len(model.layers):
        return frozenset()
    return frozenset(head.out for head in solved(model, plan, index + 1).values())


def operands_read(model: LayeredModel, plan: Plan, index: int) -> set[int]:
    """The units of layer ``index`` that the next layer's solve by chunks reads from its input (the
    decays, keys and values of the matrix heads it solves), beyond those its weights read."""
    if index + 1 == len(model.layers):
        return set()
    return {unit for h in solved(model, plan, index + 1).values()
            for first, count in ((h.decay, h.decays), (h.key, h.keys), (h.value, h.values))
            for unit in range(first, first + count)}


def kernel_applies(model: LayeredModel, plan: Plan) -> bool:
    """Whether a solve that the code runs by chunks takes conjugate-gradient steps over a matrix
    head with one decay per step: what the triton target's kernel ``solve_chunk_cg`` computes."""
    return any(any(h.decays == 1 for h in solved(model, plan, i).values()) and model.layers[i].attrs["steps"][0]
               for i in range(len(model.layers)))


def solve_call(model: LayeredModel, plan: Plan, index: int, u: str, shift: str) -> str:
    """The call of the generated ``solve_heads_chunk`` for solve layer ``index`` on its units ``u``
    and its input ``x`` (the matrix layer's output, which holds the heads' operands)."""
    layer = model.layers[index]
    chunked = {position: [list(range(h.decay, h.decay + h.decays)), list(range(h.key, h.key + h.keys)),
                          list(range(h.value, h.value + h.values))]
               for position, h in solved(model, plan, index).items()}
    size = next(p.chunk for p in plan.layers if p.layer == index - 1)
    return (f"solve_heads_chunk({u}, {list(layer.attrs['heads'])}, {shift}, {layer.attrs['steps'][0]}, "
            f"{chunked!r}, x, {size})")


_DOC = '''
    """A solve layer: u = W x + b [batch, time, width], each solve head (matrix, size, query, out)
    filled with (M + diag(shift))^-1 q as heads_layer does, except the heads in chunked
    (position -> the units of before holding the decay, key and value of the matrix head whose
    state M is), which solve_chunk solves from those operands."""'''

_TORCH_HELPER = f'''
def solve_heads_chunk(u, heads, shift, steps, chunked, before, size):{_DOC}
    others = [v for h in range(0, len(heads), 4) if h // 4 not in chunked for v in heads[h:h + 4]]
    x = heads_layer(u, "solve", others, shift, steps)
    for position, (d, k, v) in chunked.items():
        _, n, query, out = heads[4 * position:4 * position + 4]
        x[..., out:out + n] = SOLVER(before[..., d], before[..., k], before[..., v], u[..., query:query + n],
                                     shift[out:out + n], steps, size)
    return x


def solve_chunk(d, k, v, q, shift, steps, size):
    """(S_t + diag(shift))^-1 q_t of S_t = diag(d_t) S_{{t-1}} + k_t v_t^T from 0 (n x n), by chunks
    of size steps: the states at chunk starts one chunk after the other; inside a chunk
    S_t = g_t S_0 + sum_{{j <= t}} G[t, j] k_j v_j^T, formed for a direct solve (steps 0), applied
    without being formed by conjugate-gradient steps (g_t (S_0 p) + sum_j G[t, j] k_j (v_j . p))."""
    time = q.shape[1]
    d, k, v, q = chunks(d, size, 1.0), chunks(k, size), chunks(v, size), chunks(q, size)
    s = q.new_zeros(q.shape[0], q.shape[-1], q.shape[-1])
    solved = []
    for c in range(q.shape[1]):
        d_c, k_c, v_c = d[:, c], k[:, c], v[:, c]
        gains, g = masked_gains(d_c)
        weighted = gains * k_c[:, None]  # [batch, t, j, n]: G[t, j] k_j
        if steps == 0:
            states = g[..., None] * s[:, None] + torch.einsum("btji,bjv->btiv", weighted, v_c)
            solved.append(solve_system(states + torch.diag(shift), q[:, c], 0))
        else:
            def apply(p):
                return (g * torch.einsum("biv,btv->bti", s, p)
                        + torch.einsum("btji,btj->bti", weighted, torch.einsum("bjv,btv->btj", v_c, p)) + shift * p)

            solved.append(conjugate_gradient(apply, q[:, c], steps))
        s = g[:, -1, :, None] * s + torch.einsum("bji,bjv->biv", after(d_c) * k_c, v_c)
    return torch.cat(solved, dim=1)[:, :time]
'''

TORCH_HELPER = _TORCH_HELPER.replace("SOLVER", "solve_chunk")
# the triton target: its kernel where it applies, else the torch code
TRITON_HELPER = _TORCH_HELPER.replace("SOLVER", "solve_by_kernel") + '''

def solve_by_kernel(d, k, v, q, shift, steps, size):
    """solve_chunk by kernels.solve_chunk_cg where it applies (conjugate-gradient steps, one decay
    per step), else by solve_chunk's torch code (a direct solve, or a decay per row)."""
    if steps and d.shape[-1] == 1:
        return kernels.solve_chunk_cg(d, k, v, q, shift, steps, size)
    return solve_chunk(d, k, v, q, shift, steps, size)
'''

JAX_HELPER = f'''
def solve_heads_chunk(u, heads, shift, steps, chunked, before, size):{_DOC}
    others = [v for h in range(0, len(heads), 4) if h // 4 not in chunked for v in heads[h:h + 4]]
    x = heads_layer(u, "solve", others, shift, steps)
    for position, (d, k, v) in chunked.items():
        _, n, query, out = heads[4 * position:4 * position + 4]
        parts = (before[..., np.array(d)], before[..., np.array(k)], before[..., np.array(v)])
        x = x.at[..., out:out + n].set(solve_chunk(*parts, u[..., query:query + n], shift[out:out + n], steps, size))
    return x


def solve_chunk(d, k, v, q, shift, steps, size):
    """(S_t + diag(shift))^-1 q_t of S_t = diag(d_t) S_{{t-1}} + k_t v_t^T from 0 (n x n), by chunks
    of size steps (a scan over the chunks): inside a chunk S_t = g_t S_0 + sum_{{j <= t}} G[t, j]
    k_j v_j^T, formed for a direct solve (steps 0), applied without being formed by
    conjugate-gradient steps (g_t (S_0 p) + sum_j G[t, j] k_j (v_j . p))."""
    time, n = q.shape[1], q.shape[-1]

    def one_chunk(s, chunk):
        d_c, k_c, v_c, q_c = chunk
        gains, g = masked_gains(d_c)
        weighted = gains * k_c[:, None]  # [batch, t, j, n]: G[t, j] k_j
        if steps == 0:
            states = g[..., None] * s[:, None] + jnp.einsum("btji,bjv->btiv", weighted, v_c, precision=HIGHEST)
            out = solve_system(states + jnp.diag(shift), q_c, 0)
        else:
            def apply(p):
                inner = jnp.einsum("bjv,btv->btj", v_c, p, precision=HIGHEST)
                return (g * jnp.einsum("biv,btv->bti", s, p, precision=HIGHEST)
                        + jnp.einsum("btji,btj->bti", weighted, inner, precision=HIGHEST) + shift * p)

            out = conjugate_gradient(apply, q_c, steps)
        s = g[:, -1, :, None] * s + jnp.einsum("bji,bjv->biv", after(d_c) * k_c, v_c, precision=HIGHEST)
        return s, out

    xs = (chunks(d, size, 1.0), chunks(k, size), chunks(v, size), chunks(q, size))
    start = jnp.zeros((q.shape[0], n, n), q.dtype)
    _, solved = jax.lax.scan(one_chunk, start, tuple(jnp.moveaxis(x, 1, 0) for x in xs))
    solved = jnp.moveaxis(solved, 0, 1)
    return solved.reshape(solved.shape[0], -1, n)[:, :time]
'''
