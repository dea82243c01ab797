"""The values of the recurrent kinds whose transition is not a constant matrix, and of ``solve``.

Each rule takes the operands' values ``[batch, time, dim]`` (float64, or exact ``mpq`` in object
arrays) and keeps their mode: the interpreter evaluates nodes with them.

- ``gated_state``: ``h_t = a_t * h_{t-1} + b_t``, elementwise;
- ``matrix_state``: ``S_t = diag(d_t) S_{t-1} + k_t v_t^T`` from 0;
- ``delta_state``: ``S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T`` from 0,
  computed as DeltaNet writes it: ``S' = alpha S``, ``u = beta (v - S'^T k)``, ``S_t = S' + k u^T``;
- ``read``: ``q_t^T S_t``, a matrix state's read;
- ``solve``: ``(H + diag(shift))^-1 q``, exactly by Gaussian elimination, in float64 directly or by
  a stated number of conjugate-gradient steps.

Matrix states are flattened row by row: unit ``i * len(v) + j`` is ``S[i, j]``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from lsrl.ir.numbers import ZERO

Array = np.ndarray


def _zeros(shape: tuple[int, ...], like: Array) -> Array:
    """Zeros in the mode (exact) and float dtype of ``like``."""
    return np.full(shape, ZERO if like.dtype == object else 0.0, dtype=like.dtype)


def gated(gate: Array, drive: Array, init: Array) -> Array:
    """h_t = a_t * h_{t-1} + b_t over time, from h_0 = init (broadcast over the batch)."""
    out = np.empty_like(drive)
    h = init
    for t in range(drive.shape[1]):
        h = gate[:, t] * h + drive[:, t]
        out[:, t] = h
    return out


def matrix(decay: Array, key: Array, value: Array) -> Array:
    """S_t = diag(d_t) S_{t-1} + k_t v_t^T from S_0 = 0, flattened row by row."""
    batch, steps, keys = key.shape
    s = _zeros((batch, keys, value.shape[2]), key)
    out = np.empty((batch, steps, s.shape[1] * s.shape[2]), dtype=s.dtype)
    for t in range(steps):
        s = decay[:, t, :, None] * s + key[:, t, :, None] * value[:, t, None, :]
        out[:, t] = s.reshape(batch, -1)
    return out


def delta(alpha: Array, beta: Array, key: Array, value: Array) -> Array:
    """S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T from S_0 = 0, flattened."""
    batch, steps, keys = key.shape
    s = _zeros((batch, keys, value.shape[2]), key)
    out = np.empty((batch, steps, s.shape[1] * s.shape[2]), dtype=s.dtype)
    for t in range(steps):
        k, v = key[:, t], value[:, t]
        kept = alpha[:, t, :, None] * s
        written = beta[:, t] * (v - np.einsum("bi,bij->bj", k, kept))  # u = beta (v - S'^T k)
        s = kept + k[:, :, None] * written[:, None, :]
        out[:, t] = s.reshape(batch, -1)
    return out


def read(state: Array, query: Array) -> Array:
    """q_t^T S_t at every step: ``sum_i q_i S[i, :]``, S read as ``len(q)`` rows."""
    batch, time, keys = query.shape
    rows = state.reshape(batch, time, keys, state.shape[2] // keys)
    return np.einsum("btk,btkv->btv", query, rows) if query.dtype != object else (query[..., None] * rows).sum(axis=2)


def solve(h: Array, q: Array, shift: tuple, steps: int) -> Array:
    """(H + diag(shift))^-1 q at every step; H is ``len(q) x len(q)``, row by row. Raises
    ``ValueError`` where the matrix is singular."""
    batch, time, n = q.shape
    exact_mode = q.dtype == object
    matrices = h.reshape(batch, time, n, n) + np.diag(np.array(shift, dtype=object if exact_mode else q.dtype))
    if exact_mode:
        out = np.empty(q.shape, dtype=object)
        for b in range(batch):
            for t in range(time):
                out[b, t] = _eliminate([list(row) for row in matrices[b, t]], list(q[b, t]))
        return out
    if steps == 0:
        try:
            return np.linalg.solve(matrices, q[..., None])[..., 0]
        except np.linalg.LinAlgError:
            raise ValueError("the matrix to solve is singular") from None
    return conjugate_gradient(lambda p: np.einsum("...ij,...j->...i", matrices, p), q, steps)


def _eliminate(a: list[list], b: list) -> list:
    """The exact solution of a x = b, by Gaussian elimination with exact pivots."""
    n = len(b)
    rows = [a[i] + [b[i]] for i in range(n)]
    for c in range(n):
        pivot = next((r for r in range(c, n) if rows[r][c] != 0), None)
        if pivot is None:
            raise ValueError("the matrix to solve is singular")
        rows[c], rows[pivot] = rows[pivot], rows[c]
        for r in range(n):
            if r != c and rows[r][c] != 0:
                factor = rows[r][c] / rows[c][c]
                rows[r] = [x - factor * y for x, y in zip(rows[r], rows[c])]
    return [rows[i][n] / rows[i][i] for i in range(n)]


def conjugate_gradient(apply: Callable[[Array], Array], b: Array, steps: int) -> Array:
    """``steps`` conjugate-gradient steps on A x = b (A symmetric positive definite), from x = 0;
    ``apply(p)`` is ``A p`` for every vector of ``p`` (``[..., n]``), so that a caller may apply A
    without forming it (the chunk form of a solve over a matrix head's states: ``ir.forms``)."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = np.einsum("...i,...i->...", r, r)
    for _ in range(steps):
        ap = apply(p)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(rr > 0, rr / np.einsum("...i,...i->...", p, ap), 0.0)
        x = x + alpha[..., None] * p
        r = r - alpha[..., None] * ap
        following = np.einsum("...i,...i->...", r, r)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = r + np.where(rr > 0, following / rr, 0.0)[..., None] * p
        rr = following
    return x
