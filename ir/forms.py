"""The chunked and scanned forms of the recurrences of state layers, over numpy arrays: float64,
or exact ``mpq`` in object arrays (docs/schedules.md). They are the reference the generated torch
and jax code of each form follows, and, run exactly, the proof that a form computes the same
rationals as the loop over time (``ir.recurrences``): none of them divides, so decays that are
exactly 0 (the resets of hold-or-overwrite registers) are as good as any other.

Arrays are ``[batch, time, ...]``. ``a`` and ``b`` of a gated recurrence ``h_t = a_t * h_{t-1} +
b_t`` may broadcast (a constant diagonal ``a`` of shape ``[n]``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from lsrl.ir.numbers import ONE, ZERO
from lsrl.ir.recurrences import conjugate_gradient, solve

Array = np.ndarray
Elements = tuple[Array, ...]


def _unit(like: Array, value: int) -> object:
    """0 or 1 in the mode of ``like``."""
    if like.dtype == object:
        return ONE if value else ZERO
    return like.dtype.type(value)


def _chunked(x: Array, size: int, fill: int) -> Array:
    """``[batch, time, ...]`` -> ``[batch, chunks, size, ...]``, the last chunk padded with ``fill``
    (padding comes after every real step, so it changes none of them)."""
    pad = -x.shape[1] % size
    if pad:
        tail = np.full((x.shape[0], pad, *x.shape[2:]), _unit(x, fill), dtype=x.dtype)
        x = np.concatenate([x, tail], axis=1)
    return x.reshape(x.shape[0], x.shape[1] // size, size, *x.shape[2:])


# --- the loop over time, for constant matrices ----------------------------------------------------------
def matrix_recurrent(transition: Array, v: Array, init: Array) -> Array:
    """h_t = A h_{t-1} + v_t from h_0 = init, one step after the other."""
    out = np.empty_like(v)
    h = np.broadcast_to(init, v[:, 0].shape)
    for t in range(v.shape[1]):
        h = h @ transition.T + v[:, t]
        out[:, t] = h
    return out


# --- chunk ----------------------------------------------------------------------------------------------
def gated_chunk(a: Array, b: Array, init: Array, size: int) -> Array:
    """h_t = a_t * h_{t-1} + b_t (elementwise) from h_0 = init, by chunks of ``size`` steps.

    Inside every chunk at once: its last state from 0 and ``decay``, the product of its gates (the
    chunk's start is the reference point, so nothing is ever divided by a product). Then the chunks'
    start states one after the other, ``start_{c+1} = decay start_c + last``, and every chunk again
    from its start state, all chunks at once. Over the rationals that is ``local_i + decay_i start``
    with every step's state from 0 and gate product kept; the work is elementwise and bound by memory,
    and rereading the gates and inputs once costs less than writing those two arrays and reading them
    back.
    """
    a = np.broadcast_to(a, b.shape)
    a_c, b_c = _chunked(a, size, 1), _chunked(b, size, 0)
    last, decay = b_c[:, :, 0], a_c[:, :, 0]
    for i in range(1, size):
        last, decay = a_c[:, :, i] * last + b_c[:, :, i], a_c[:, :, i] * decay
    starts = np.empty_like(last)
    h = np.broadcast_to(init, starts[:, 0].shape)
    for c in range(starts.shape[1]):
        starts[:, c] = h
        h = decay[:, c] * h + last[:, c]
    out, h = np.empty_like(b_c), starts
    for i in range(size):
        h = out[:, :, i] = a_c[:, :, i] * h + b_c[:, :, i]
    return out.reshape(b.shape[0], -1, *b.shape[2:])[:, : b.shape[1]]


def matrix_chunk(transition: Array, v: Array, init: Array, size: int) -> Array:
    """h_t = A h_{t-1} + v_t from h_0 = init (A constant), by chunks: every chunk from 0
    at once (``local_i``), the chunks' start states one after the other, then ``local_i + A^i start``
    (the powers computed once; a gated chunk recomputes instead, :func:`gated_chunk`)."""
    v_c = _chunked(v, size, 0)
    powers = [transition]
    for _ in range(1, size):
        powers.append(transition @ powers[-1])
    local = np.empty_like(v_c)
    local[:, :, 0] = v_c[:, :, 0]
    for i in range(1, size):
        local[:, :, i] = local[:, :, i - 1] @ transition.T + v_c[:, :, i]
    starts = np.empty_like(local[:, :, 0])
    h = np.broadcast_to(init, starts[:, 0].shape)
    for c in range(starts.shape[1]):
        starts[:, c] = h
        h = h @ powers[-1].T + local[:, c, -1]
    out = local + np.stack([starts @ p.T for p in powers], axis=2)
    return out.reshape(v.shape[0], -1, v.shape[-1])[:, : v.shape[1]]


def matrix_head_chunk(decay: Array, key: Array, value: Array, query: Array | None, size: int,
                      sub: int | None = None) -> Array:
    """S_t = diag(d_t) S_{t-1} + k_t v_t^T from S_0 = 0 (``d`` one number or one per row), by
    chunks, emitting ``q_t^T S_t`` (with a query) or ``S_t`` row by row (GLA / SSD's chunk form).

    In a chunk from the state S_0 at its start, with ``G[t, j]`` the products of the decays of
    steps j+1..t (per row) and ``g_t`` those of steps 1..t: ``S_t = g_t S_0 + sum_{j <= t} G[t, j]
    k_j v_j^T``, so ``q_t^T S_t = (q_t g_t)^T S_0 + sum_j P[t, j] v_j`` with ``P[t, j] = sum_i q_ti
    G[t, j, i] k_ji`` (:func:`chunk_scores`), and the next chunk starts from ``g_C S_0 + sum_j
    (G[C, j] k_j) v_j^T``. Every product starts at its own step (cumulative products, never a
    quotient), so decays that are 0 or tiny are as good as any.
    """
    k_c, v_c, d_c = _chunked(key, size, 0), _chunked(value, size, 0), _chunked(decay, size, 1)
    q_c = None if query is None else _chunked(query, size, 0)
    s = np.full((key.shape[0], key.shape[2], value.shape[2]), _unit(key, 0), dtype=key.dtype)
    emitted = []
    for c in range(k_c.shape[1]):
        d, k, v = d_c[:, c], k_c[:, c], v_c[:, c]
        g = np.cumprod(d, axis=1)
        if q_c is None:
            gains, _ = _gains(d)  # the states themselves: every G[t, j] is needed
            local = np.einsum("btji,bjv->btiv", gains * k[:, None], v)
            emitted.append((g[..., None] * s[:, None] + local).reshape(*local.shape[:2], -1))
        else:
            q = q_c[:, c]
            emitted.append(chunk_scores(q, k, d, sub) @ v + (q * g) @ s)
        s = g[:, -1, :, None] * s + np.einsum("bji,bjv->biv", _after(d) * k, v)
    return np.concatenate(emitted, axis=1)[:, : key.shape[1]]


def chunk_scores(query: Array, key: Array, decay: Array, sub: int | None = None) -> Array:
    """``P[t, j] = sum_i q_ti G[t, j, i] k_ji`` for one chunk (``[batch, size, n]`` each; 0 for
    j > t), ``G[t, j]`` the products of the decays of steps j+1..t.

    A scalar decay gives ``P = (Q K^T) * G``. A decay per row would need ``G`` as ``size x size x
    keys`` numbers; instead (GLA's secondary chunking, with products only) the chunk is cut into
    sub-chunks of ``sub`` steps: inside one, P by diagonals (:func:`diagonal_scores`); across two,
    ``G`` factors into ``A[t]`` (the decays from t's sub-chunk's start to t), ``M`` (those of the
    whole sub-chunks between) and ``B[j]`` (those after j to the end of j's sub-chunk), so each
    pair of sub-chunks is one product ``((Q A) M) (K B)^T``.
    """
    batch, size, rows = decay.shape
    if rows == 1:
        gains, _ = _gains(decay)
        return (query @ np.swapaxes(key, -1, -2)) * gains[..., 0]
    sub = sub or sub_chunk(size)
    m = size // sub
    d, q, k = (x.reshape(batch, m, sub, x.shape[-1]) for x in (decay, query, key))
    ahead = np.cumprod(d, axis=2)
    between, _ = _gains(ahead[:, :, -1])  # [batch, I, J]: the sub-chunks J+1..I whole
    middle = np.concatenate([np.full_like(between[:, :1], _unit(decay, 0)), between[:, :-1]], axis=1)  # J+1..I-1
    across = np.einsum("bitk,bijk,bjsk->bitjs", q * ahead, middle, k * _after(d))
    within = diagonal_scores(q, k, d)
    return (across + within[:, :, :, None, :] * np.eye(m, dtype=int)[None, :, None, :, None]).reshape(batch, size, size)


def sub_chunk(size: int) -> int:
    """The sub-chunk of :func:`chunk_scores`: the largest divisor of the chunk size up to 8 (the
    work inside sub-chunks grows with their size, that across them with their number)."""
    return next(s for s in range(min(8, size), 0, -1) if size % s == 0)


def diagonal_scores(query: Array, key: Array, decay: Array) -> Array:
    """``P[t, j] = sum_i q_ti G[t, j, i] k_ji`` inside blocks ``[..., sub, n]`` (0 for j > t), one
    diagonal ``j = t - o`` after the other: ``q_t G[t, t - o] = (q_t G[t, t - o + 1]) d_{t - o + 1}``,
    a product per step from t back, never a quotient, without forming ``G``."""
    sub = decay.shape[-2]
    scores = np.full((*query.shape[:-1], sub), _unit(query, 0), dtype=query.dtype)
    reads = query
    for o in range(sub):
        if o:
            reads = reads[..., 1:, :] * decay[..., 1:sub - o + 1, :]
        rows = np.arange(o, sub)
        scores[..., rows, rows - o] = (reads * key[..., :sub - o, :]).sum(axis=-1)
    return scores


def _after(decay: Array) -> Array:
    """The products of the decays after each step to the end (axis -2; 1 at the last step)."""
    behind = np.cumprod(decay[..., ::-1, :], axis=-2)[..., ::-1, :]
    return np.concatenate([behind[..., 1:, :], np.full_like(behind[..., :1, :], _unit(decay, 1))], axis=-2)


def _gains(decay: Array) -> tuple[Array, Array]:
    """``G[t, j] = prod_{j < l <= t} d_l`` (0 above the diagonal, 1 on it) and ``g_t = prod_{l <= t} d_l``
    for one chunk of decays ``[batch, size, n]``: cumulative products down each column, no quotient."""
    steps = np.arange(decay.shape[1])
    later = (steps[:, None] > steps[None, :])[..., None]  # [t, j, 1]: j < t
    factors = np.where(later, decay[:, :, None, :], _unit(decay, 1))
    gains = np.where(later | (steps[:, None] == steps[None, :])[..., None], np.cumprod(factors, axis=1), _unit(decay, 0))
    return gains, np.cumprod(decay, axis=1)


def delta_head_chunk(alpha: Array, beta: Array, key: Array, value: Array, query: Array | None, size: int) -> Array:
    """S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T from S_0 = 0, by chunks
    through the WY / UT representation, emitting ``q_t^T S_t`` (with a query) or ``S_t`` row by row.

    In a chunk from S_0, with ``G[t, j]`` the product of the alphas of steps j+1..t (a masked
    cumulative product: never a quotient) and ``g_t = G[t, 0]``, the written vectors
    ``u_t = beta_t (v_t - alpha_t S_{t-1}^T k_t)`` solve the unit lower triangular system
    ``(I + L) U = diag(beta) (V - diag(g) K S_0)``, ``L[t, j] = beta_t G[t, j] k_t . k_j`` (j < t):
    ``U = T V - T diag(g) K S_0`` with ``T = (I + L)^-1 diag(beta)`` (forward substitution; the
    diagonal is 1, nothing is divided). Then ``S_t = g_t S_0 + sum_{j <= t} G[t, j] k_j u_j^T``,
    ``q_t^T S_t = g_t q_t^T S_0 + sum_j ((Q K^T) * G)[t, j] u_j``, and the next chunk starts from
    ``g_C S_0 + K^T (G[C, :] U)``. ``T V`` and ``T diag(g) K`` are computed for all chunks at once.
    """
    batch, time, keys = key.shape
    a_c, b_c = _chunked(alpha, size, 1), _chunked(beta, size, 0)[..., 0]
    k_c, v_c = _chunked(key, size, 0), _chunked(value, size, 0)
    q_c = None if query is None else _chunked(query, size, 0)
    gains, g = _gains(a_c.reshape(-1, size, 1))
    gains = gains.reshape(*a_c.shape[:2], size, size)
    g = g.reshape(a_c.shape[:3])
    steps = np.arange(size)
    lower = np.where(steps[:, None] > steps[None, :], b_c[..., :, None] * gains * (k_c @ np.swapaxes(k_c, -1, -2)),
                     _unit(key, 0))
    solved = _unit_lower_solve(lower, b_c[..., :, None] * np.eye(size, dtype=int).astype(key.dtype))
    written_v, written_k = solved @ v_c, solved @ (g[..., None] * k_c)  # T V, T diag(g) K
    s = np.full((batch, keys, value.shape[2]), _unit(key, 0), dtype=key.dtype)
    emitted = []
    for c in range(k_c.shape[1]):
        u = written_v[:, c] - written_k[:, c] @ s
        k, weights = k_c[:, c], gains[:, c]
        if q_c is None:
            states = g[:, c, :, None, None] * s[:, None] + np.einsum("btj,bjk,bjv->btkv", weights, k, u)
            emitted.append(states.reshape(batch, size, -1))
        else:
            q = q_c[:, c]
            emitted.append(((q @ np.swapaxes(k, -1, -2)) * weights) @ u + g[:, c, :, None] * (q @ s))
        s = g[:, c, -1, None, None] * s + np.swapaxes(k, -1, -2) @ (weights[:, -1, :, None] * u)
    return np.concatenate(emitted, axis=1)[:, :time]


def _unit_lower_solve(lower: Array, rhs: Array) -> Array:
    """X with (I + lower) X = rhs, ``lower`` strictly lower triangular: forward substitution."""
    x = np.empty_like(rhs)
    for t in range(rhs.shape[-2]):
        x[..., t, :] = rhs[..., t, :] - np.einsum("...j,...js->...s", lower[..., t, :t], x[..., :t, :])
    return x


# --- chunk: a solve over a matrix head's states (Mesa) ------------------------------------------------------
def solve_chunk(decay: Array, key: Array, value: Array, query: Array, shift: tuple, steps: int, size: int) -> Array:
    """``(S_t + diag(shift))^-1 q_t`` at every step, ``S_t = diag(d_t) S_{t-1} + k_t v_t^T`` from 0
    (``n x n``: keys and values alike), by chunks: Mesa's readout through the chunkwise
    accumulation of its ``H`` and the per-step solve (``G`` is a matrix head read by the solution:
    :func:`matrix_head_chunk`).

    The states at chunk starts follow by the inter-chunk recurrence (as in
    :func:`matrix_head_chunk`); inside a chunk ``S_t = g_t S_0 + sum_{j <= t} G[t, j] k_j v_j^T``.
    Exactly, and in float64 with ``steps`` 0, every ``S_t`` of the chunk is formed from that sum and
    solved (Gaussian elimination over the rationals); with ``steps`` conjugate-gradient steps, as
    fla's ``naive_mesa_net_CG`` does, ``S_t`` is never formed: each step applies it as ``g_t (S_0 p)
    + sum_j G[t, j] k_j (v_j . p)``, ``C n^2 + C^2 n`` per step of the chunk instead of ``C n^2``
    to form it and ``n^3`` to solve it. Nothing divides by a product of decays.
    """
    batch, time, n = key.shape
    d_c, k_c, v_c, q_c = _chunked(decay, size, 1), _chunked(key, size, 0), _chunked(value, size, 0), _chunked(query, size, 0)
    s = np.full((batch, n, n), _unit(key, 0), dtype=key.dtype)
    solved = []
    for c in range(k_c.shape[1]):
        real = min(size, time - c * size)  # the last chunk's padding is never solved (it may be singular)
        d, k, v, q = d_c[:, c], k_c[:, c], v_c[:, c], q_c[:, c, :real]
        gains, g = _gains(d)
        weighted = (gains * k[:, None])[:, :real]  # [batch, t, j, n]: G[t, j] k_j
        if key.dtype == object or steps == 0:
            states = g[:, :real, :, None] * s[:, None] + np.einsum("btji,bjv->btiv", weighted, v)
            solved.append(solve(states.reshape(batch, real, n * n), q, shift, steps))
        else:
            shifts = np.array([float(x) for x in shift], dtype=key.dtype)

            def apply(p: Array) -> Array:
                return (g[:, :real] * np.einsum("biv,btv->bti", s, p)
                        + np.einsum("btji,btj->bti", weighted, np.einsum("bjv,btv->btj", v, p)) + shifts * p)

            solved.append(conjugate_gradient(apply, q, steps))
        s = g[:, -1, :, None] * s + np.einsum("bji,bjv->biv", _after(d) * k, v)
    return np.concatenate(solved, axis=1)


# --- scan -----------------------------------------------------------------------------------------------
def associative_scan(combine: Callable[[Elements, Elements], Elements], elements: Elements) -> Elements:
    """The prefixes ``e_t o ... o e_1`` of every step (axis 1), ``combine(earlier, later)``
    associative: pairs of neighbours combined, the pairs scanned, the rest filled in (odd-even
    recursion, O(T) combines in 2 log T rounds)."""
    time = elements[0].shape[1]
    if time < 2:
        return elements
    pairs = time // 2
    paired = combine(tuple(e[:, 0:2 * pairs:2] for e in elements), tuple(e[:, 1:2 * pairs:2] for e in elements))
    odd = associative_scan(combine, paired)
    even = combine(tuple(s[:, : (time - 1) // 2] for s in odd), tuple(e[:, 2::2] for e in elements))
    out = []
    for e, o, v in zip(elements, odd, even):
        whole = np.empty_like(e)
        whole[:, 0], whole[:, 1::2], whole[:, 2::2] = e[:, 0], o, v
        out.append(whole)
    return tuple(out)


def _gated_combine(earlier: Elements, later: Elements) -> Elements:
    return later[0] * earlier[0], later[0] * earlier[1] + later[1]


def _matrix_combine(earlier: Elements, later: Elements) -> Elements:
    return later[0] @ earlier[0], later[0] @ earlier[1] + later[1]


def gated_scan(a: Array, b: Array, init: Array) -> Array:
    """h_t = a_t * h_{t-1} + b_t from h_0 = init: the associative scan of ``(a_t, b_t)`` (the
    first step's ``b`` taking ``a_1 init`` in)."""
    a = np.broadcast_to(a, b.shape).copy()
    b = b.copy()
    b[:, 0] = a[:, 0] * init + b[:, 0]
    return associative_scan(_gated_combine, (a, b))[1]


def matrix_scan(transition: Array, v: Array, init: Array) -> Array:
    """h_t = A h_{t-1} + v_t from h_0 = init: the scan of ``(A, v_t)`` (each combine a product of
    n x n matrices: n^3)."""
    batch, time, n = v.shape
    a = np.broadcast_to(transition, (batch, time, n, n)).copy()
    b = v[..., None].copy()
    b[:, 0, :, 0] = init @ transition.T + v[:, 0]
    return associative_scan(_matrix_combine, (a, b))[1][..., 0]


def matrix_head_scan(decay: Array, key: Array, value: Array) -> Array:
    """S_t = diag(d_t) S_{t-1} + k_t v_t^T from S_0 = 0, flattened: the scan of ``(d_t, k_t v_t^T)``,
    elementwise (a decay scales its row: kept as a column, ``[batch, time, rows, 1]``)."""
    batch, time, keys = key.shape
    a = decay[..., None]
    b = key[..., :, None] * value[..., None, :]
    return associative_scan(_gated_combine, (a, b))[1].reshape(batch, time, -1)


def delta_scan(alpha: Array, beta: Array, key: Array, value: Array) -> Array:
    """The delta rule from S_0 = 0 as the scan of ``(alpha_t (I - beta_t k_t k_t^T), beta_t k_t
    v_t^T)``: each combine a product of keys x keys matrices (keys^3)."""
    batch, time, keys = key.shape
    identity = np.eye(keys, dtype=int).astype(key.dtype)
    outer = key[..., :, None] * key[..., None, :]
    a = alpha[..., None] * (identity - beta[..., None] * outer)
    b = beta[..., None] * key[..., :, None] * value[..., None, :]
    return associative_scan(_matrix_combine, (a, b))[1].reshape(batch, time, -1)
