"""The generated chunk and scan forms of matrix and delta heads (backends/head_forms.py), called
directly on per-head operands: float64 against a plain numpy loop over time, from a random start
state, with decays that are exactly 0 and chunk sizes that cut the chunk into several sub-chunks
(the secondary chunking of a decay per row), that do not divide the length, and C = 1.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from lsrl.backends import Options, get_target
from lsrl.backends.codegen import import_generated
from lsrl.ir.graph import Label
from lsrl.ir.heads import DeltaHead, MatrixHead, encode
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import exact
from lsrl.ir.schedule import CHUNK, SCAN
from lsrl.passes.schedule import schedule

BATCH, HEADS, KEYS, VALUES, TIME = 2, 3, 4, 3, 37


def helpers(target: str, kind: str, form: str, size: int):
    """The generated model.py of a one-head ``kind`` layer in ``form``, as a module (its helpers)."""
    head = (MatrixHead(0, KEYS, 0, KEYS, 0, VALUES, 0, 0) if kind == "matrix"
            else DeltaHead(0, 0, 0, KEYS, 0, VALUES, 0, 0))
    width = KEYS + VALUES
    layer = Layer(kind, {"W": Matrix(width, 1), "b": (exact(0),) * width, "heads": encode([head])},
                  tuple(UnitLabel(Label("u", i)) for i in range(width)))
    model = LayeredModel(1, [layer], [Label("x", 0)], [Label("u", i) for i in range(width)])
    built = get_target(target).build(model, replace(Options(), plan=schedule(model, form, size)))
    return import_generated(built.files["model.py"])


def operands(kind: str, decays: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """[batch, time, heads, n] operands of the heads, about one decay in six exactly 0, and the queries."""
    def decay(n):
        return np.where(rng.random((BATCH, TIME, HEADS, n)) < 1 / 6, 0.0, rng.uniform(0.3, 1.0, (BATCH, TIME, HEADS, n)))

    k, v, q = (rng.standard_normal((BATCH, TIME, HEADS, n)) for n in (KEYS, VALUES, KEYS))
    if kind == "matrix":
        return [decay(decays), k, v], q
    return [decay(1), rng.uniform(0.0, 1.0, (BATCH, TIME, HEADS, 1)), k, v], q


def loop(kind: str, parts: list[np.ndarray], q: np.ndarray | None, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The heads one step after the other: q_t^T S_t (or S_t row by row) and the last S."""
    emitted = []
    for t in range(parts[0].shape[1]):
        if kind == "matrix":
            d, k, v = (p[:, t] for p in parts)
            s = d[..., None] * s + k[..., :, None] * v[..., None, :]
        else:
            alpha, beta, k, v = (p[:, t] for p in parts)
            kept = alpha[..., None] * s
            written = beta * (v - np.einsum("bhk,bhkv->bhv", k, kept))
            s = kept + k[..., :, None] * written[..., None, :]
        emitted.append(s.reshape(BATCH, HEADS, -1) if q is None else np.einsum("bhk,bhkv->bhv", q[:, t], s))
    return np.stack(emitted, axis=1), s


def run_form(target: str, module, kind: str, parts, q, s, form: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    if target == "torch":
        import torch

        as_torch = [torch.from_numpy(p) for p in parts]
        emitted, last = module.head_form(kind, as_torch, None if q is None else torch.from_numpy(q),
                                         torch.from_numpy(s), form, size)
        return emitted.numpy(), last.numpy()
    import jax

    jax.config.update("jax_enable_x64", True)
    compiled = jax.jit(module.head_form, static_argnums=(0, 4, 5))  # compiling once is faster than running op by op
    emitted, last = compiled(kind, [jax.numpy.asarray(p) for p in parts], None if q is None else jax.numpy.asarray(q),
                             jax.numpy.asarray(s), form, size)
    return np.asarray(emitted), np.asarray(last)


KINDS = [("matrix", KEYS), ("matrix", 1), ("delta", 1)]
QUICK = [(CHUNK, 5, True), (CHUNK, 24, True), (CHUNK, 24, False), (SCAN, 0, True)]
FULL = [(form, size, reads) for form, size in [(CHUNK, 1), (CHUNK, 5), (CHUNK, 16), (CHUNK, 24), (CHUNK, 64), (SCAN, 0)]
        for reads in (True, False) if (form, size, reads) not in QUICK]


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("kind,decays", KINDS)
@pytest.mark.parametrize("form,size,reads", QUICK + [pytest.param(*case, marks=pytest.mark.slow) for case in FULL])
def test_head_forms_match_the_loop_over_time(target: str, kind: str, decays: int, form: str, size: int,
                                             reads: bool) -> None:
    """C = 24: three sub-chunks of 8 (a decay per row); C = 5: one sub-chunk of 5, and 37 steps in
    chunks that do not divide them."""
    pytest.importorskip(target)
    rng = np.random.default_rng(size * 7 + decays + reads)
    parts, q = operands(kind, decays, rng)
    q = q if reads else None
    s = rng.standard_normal((BATCH, HEADS, KEYS, VALUES))
    want, want_last = loop(kind, parts, q, s)
    got, got_last = run_form(target, helpers(target, kind, form, size or 64), kind, parts, q, s, form, size)
    scale = max(1.0, np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale, err_msg=f"{target} {kind} {form} {size}")
    np.testing.assert_allclose(got_last, want_last, rtol=0, atol=1e-12 * max(1.0, np.abs(want_last).max()))


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("form,size", [(CHUNK, 16), (SCAN, 0)])
@pytest.mark.parametrize("kind,decays", KINDS)
def test_forms_over_several_blocks(target: str, form: str, size: int, kind: str, decays: int) -> None:
    """The chunk forms run blocks of whole chunks (jax about 128 steps, torch about 256) and the
    scan forms segments of 256 steps, one after the other from the state the one before left,
    then the steps after the last whole one: 333 steps (with a start state and decays exactly 0)
    cross two or three of them, as the loop over time computes them."""
    pytest.importorskip(target)
    rng = np.random.default_rng(11)
    pieces = [operands(kind, decays, rng) for _ in range(9)]  # 9 x 37 = 333 steps
    parts = [np.concatenate(p, axis=1) for p in zip(*(parts for parts, _ in pieces))]
    q = np.concatenate([q for _, q in pieces], axis=1)
    s = rng.standard_normal((BATCH, HEADS, KEYS, VALUES))
    want, want_last = loop(kind, parts, q, s)
    got, got_last = run_form(target, helpers(target, kind, form, size or 64), kind, parts, q, s, form, size)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(1.0, np.abs(want).max()))
    np.testing.assert_allclose(got_last, want_last, rtol=0, atol=1e-12 * max(1.0, np.abs(want_last).max()))


def test_the_recurrent_plan_emits_no_head_forms() -> None:
    """The recurrent plan emits no chunk or scan helpers (the model stays small)."""
    module = helpers("torch", "matrix", "recurrent", 64)
    assert not hasattr(module, "head_form")


@pytest.mark.parametrize("kind,decays", KINDS)
def test_torch_chunk_form_has_the_gradients_of_the_loop(kind: str, decays: int) -> None:
    """The torch forms write nothing in place that autograd needs: the gradients of the chunk form
    (C = 24: several sub-chunks) are those of the loop over time, written here in torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    parts, q = operands(kind, decays, rng)
    module = helpers("torch", kind, CHUNK, 24)

    def gradients(run):
        leaves = [torch.tensor(p, requires_grad=True) for p in (*parts, q)]
        run(leaves[:-1], leaves[-1]).square().sum().backward()
        return [leaf.grad.numpy() for leaf in leaves]

    def loop_in_torch(ops, reads):
        s, emitted = torch.zeros(BATCH, HEADS, KEYS, VALUES, dtype=torch.float64), []
        for t in range(TIME):
            if kind == "matrix":
                d, k, v = (p[:, t] for p in ops)
                s = d[..., None] * s + k[..., :, None] * v[..., None, :]
            else:
                alpha, beta, k, v = (p[:, t] for p in ops)
                kept = alpha[..., None] * s
                s = kept + k[..., :, None] * (beta * (v - torch.einsum("bhk,bhkv->bhv", k, kept)))[..., None, :]
            emitted.append(torch.einsum("bhk,bhkv->bhv", reads[:, t], s))
        return torch.stack(emitted, dim=1)

    start = torch.zeros(BATCH, HEADS, KEYS, VALUES, dtype=torch.float64)
    got = gradients(lambda ops, reads: module.head_form(kind, ops, reads, start, CHUNK, 24)[0])
    for g, w in zip(got, gradients(loop_in_torch)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-10 * max(1.0, np.abs(w).max()))
