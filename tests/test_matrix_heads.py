"""Matrix heads (ir/heads.py): a read of a matrix or delta state is part of the state's head, so
the layer emits the read (dv units) rather than the state (dk * dv); targets without matrix
layers get the flat form; the rounding analysis proves a matrix head exact where its lattices
allow."""

from __future__ import annotations

import numpy as np
import pytest
from lsrl.backends.target import Options
from lsrl.ir import heads
from lsrl.ir.interpret import run
from lsrl.passes import lower

import lsrl
from lsrl.corpus.cases_gated import induction, mqar


def recall(keys: int = 3, values: int = 2) -> lsrl.Graph:
    """S_t = S_{t-1} + k_t v_t^T, output q_t^T S_t: the token is (k, v, q)."""
    p = lsrl.Program()
    x = p.input(2 * keys + values)
    memory = p.matrix_state(1, x[0:keys], x[keys:keys + values])
    p.output(lsrl.read(memory, x[keys + values:]))
    return p.finish()


def test_a_read_makes_the_head_emit_values_units_not_the_state() -> None:
    model = lower(recall(keys=3, values=2))
    (layer,) = [l for l in model.layers if l.kind == "matrix"]
    (head,) = heads.decode("matrix", layer.attrs["heads"])
    assert head.query != heads.NO_QUERY and len(head.outputs) == 2
    assert model.stats()["state_dims"] == 6  # the state stays inside the layer


def test_without_matrix_layers_the_state_is_flat_and_the_read_products() -> None:
    model = lower(recall(keys=3, values=2), matrix_heads=False)
    kinds = [l.kind for l in model.layers]
    assert "matrix" not in kinds and "gate" in kinds


@pytest.mark.parametrize("matrix_heads", [True, False])
def test_both_forms_compute_the_recall(matrix_heads: bool) -> None:
    rng = np.random.default_rng(5)
    tokens = rng.integers(-3, 4, size=(2, 9, 8)).tolist()
    k, v, q = (np.array(tokens)[..., a:b] for a, b in ((0, 3), (3, 5), (5, 8)))
    state = np.cumsum(k[..., :, None] * v[..., None, :], axis=1)  # S_t, written here from the definition
    want = np.einsum("btk,btkv->btv", q, state)
    got = lower(recall(), matrix_heads=matrix_heads).run(tokens, exact=True)
    assert np.array_equal(got.astype(np.int64), want)


def test_a_delta_head_with_a_query_emits_the_read() -> None:
    model = lower(induction(8), (1, 8), integer_inputs=True)
    (layer,) = [l for l in model.layers if l.kind == "delta"]
    (head,) = heads.decode("delta", layer.attrs["heads"])
    assert head.query != heads.NO_QUERY and len(head.outputs) == 1


def test_heads_of_one_shape_form_one_group() -> None:
    from lsrl.backends.head_code import head_groups

    p = lsrl.Program()
    x = p.input(6)
    reads = [lsrl.read(p.matrix_state(1, x[i:i + 2], x[2:4]), x[4:6]) for i in (0, 1, 2)]
    p.output(lsrl.concat(reads))
    model = lower(p.finish())
    (layer,) = [l for l in model.layers if l.kind == "matrix"]
    (group,) = head_groups(layer)
    operands, query, out, state = group
    assert len(out) == 3 and len(state) == 3 and query is not None


@pytest.mark.parametrize("bound, steps, verdict", [(4, 10, "exact"), (2**12, 1000, "unproven")])
def test_a_matrix_head_is_exact_where_its_entries_fit_the_dtype(bound: int, steps: int, verdict: str) -> None:
    """Entries up to steps * bound^2: 160 fits float32's 2^24, 1000 * 2^24 does not."""
    pytest.importorskip("torch")
    options = Options(input_range=(0, bound), integer_inputs=True, max_len=steps)
    compiled = lsrl.compile_to(recall(), "torch", options)
    assert compiled.config["precision"]["float32"] == verdict


def test_mqar_reads_in_a_head_on_torch() -> None:
    pytest.importorskip("torch")
    compiled = lsrl.compile_to(mqar(8), "torch", Options(input_range=(0, 8), integer_inputs=True))
    assert "state_heads(" in compiled.files["model.py"]
    tokens = [[3], [5], [1], [2], [0], [1], [3], [4]]
    got = lsrl.run_compiled(compiled, np.array(tokens, dtype=float), "float32")[0, :, 0]
    assert got.tolist() == run(mqar(8), tokens, exact=True)[0, :, 0].astype(float).tolist() == [0] * 5 + [2, 5, 0]
