"""l2norm(x): x / sqrt(sum x_i^2 + eps), as flash-linear-attention's l2norm, float64 only."""

from __future__ import annotations

import numpy as np
import pytest
from lsrl.ir.interpret import NotExactError, run

from lsrl.errors import LsrlError
from lsrl.load import compile_source

SOURCE = "input x[3]\noutput y = l2norm(x{eps})\n"


def normalized(x: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).sum(axis=-1, keepdims=True) + eps)


@pytest.mark.parametrize("eps, given", [(1e-6, ""), (0.5, ", 1/2")])
def test_l2norm_is_fla_normalization(eps: float, given: str) -> None:
    x = np.random.default_rng(3).normal(size=(5, 3)) * [[1.0], [1e-4], [1e3], [0.0], [2.0]]
    got = run(compile_source(SOURCE.format(eps=given), "n.lsrl"), x)[0]
    np.testing.assert_allclose(got, normalized(x, eps), rtol=1e-14, atol=0)
    assert np.all(got[3] == 0)  # a zero vector stays zero


def test_exact_mode_refuses_l2norm_at_the_call() -> None:
    graph = compile_source(SOURCE.format(eps=""), "n.lsrl")
    with pytest.raises(NotExactError) as e:
        run(graph, [[1, 2, 2]], exact=True)
    assert (e.value.loc.line, e.value.loc.col) == (2, 12)


def test_a_negative_eps_is_refused_at_the_argument() -> None:
    with pytest.raises(LsrlError, match="eps must be a number >= 0") as e:
        compile_source(SOURCE.format(eps=", -1"), "n.lsrl")
    assert (e.value.loc.line, e.value.loc.col) == (2, 22)


def test_torch_computes_l2norm() -> None:
    pytest.importorskip("torch")
    import lsrl

    graph = compile_source(SOURCE.format(eps=""), "n.lsrl")
    x = np.random.default_rng(4).normal(size=(1, 6, 3))
    compiled = lsrl.compile_to(graph, "torch")
    got = lsrl.run_compiled(compiled, x, "float64")
    np.testing.assert_allclose(got, normalized(x, 1e-6), rtol=1e-14)
