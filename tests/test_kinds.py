"""Every node kind crossed with every pass and every target (lsrl/corpus/kind_samples.py).

Each pass, the text and JSON round trips, the whole preparation and the layered model keep a
sample's outputs: identical rationals in exact mode, and for the float-only kinds the float64
interpreter's numbers to a last-bits tolerance. Each target either computes the sample (within
the error bound it states for float64) or refuses it with an ``LsrlError`` that points at a line of
the sample; ``torch`` and ``jax`` compute every kind.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from lsrl.backends import TARGET_NAMES, get_target
from lsrl.backends.target import Options
from lsrl.backends.verdict import output_bounds
from lsrl.ir.errors import LsrlError
from lsrl.ir.graph import KINDS, Graph
from lsrl.ir.interpret import EVALUATION_RULES, run
from lsrl.ir.serialize import graph_from_json, graph_to_json
from lsrl.ir.text import parse_graph, print_graph
from lsrl.ir.verify import verify
from lsrl.passes import PASS_NAMES, lower, prepare, run_pipeline
from lsrl.passes.canonicalize import FOLD_RULES, NOT_FOLDED
from lsrl.passes.expand import EXPANDED_KINDS
from lsrl.passes.linear_forms import LINEAR_KINDS
from lsrl.passes.linearize import LAYER_KIND
from lsrl.passes.ranges import RANGE_RULES

from lsrl.corpus.kind_samples import SAMPLES, KindSample
from lsrl.inputs import read_tokens
from lsrl.load import compile_source
from lsrl.targets import compile_to, run_compiled

FLOAT_RTOL = 1e-12
SAMPLE = {s.kind: s for s in SAMPLES}
KIND_NAMES = sorted(KINDS)


def test_every_kind_has_one_sample() -> None:
    assert sorted(s.kind for s in SAMPLES) == KIND_NAMES


def test_every_kind_has_its_rules() -> None:
    """The interpreter and the range analysis have a rule for every kind; canonicalize folds it
    (a rule), sees through it (linear) or leaves it; linearize places it, or it is gone by then."""
    assert sorted(EVALUATION_RULES) == KIND_NAMES
    assert sorted(RANGE_RULES) == KIND_NAMES
    folded = [*FOLD_RULES, *LINEAR_KINDS, *NOT_FOLDED]
    assert sorted(folded) == KIND_NAMES, "a kind with no folding rule or several"
    placed = [*LAYER_KIND, *LINEAR_KINDS, "input", *EXPANDED_KINDS, "read"]  # (a read: its state's head's)
    assert sorted(placed) == KIND_NAMES, "a kind linearize neither places nor sees expanded"


@lru_cache(maxsize=None)
def graph(kind: str) -> Graph:
    return compile_source(SAMPLE[kind].source, f"{kind}.lsrl")


def runs(sample: KindSample) -> list[list[list]]:
    return [read_tokens(spec) for spec in sample.inputs]


@lru_cache(maxsize=None)
def reference(kind: str) -> tuple[np.ndarray, ...]:
    sample = SAMPLE[kind]
    return tuple(np.asarray(run(graph(kind), seq, exact=not sample.float_only)) for seq in runs(sample))


def assert_same(kind: str, computed: list[np.ndarray]) -> None:
    for got, want in zip(computed, reference(kind)):
        if SAMPLE[kind].float_only:
            np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want.astype(np.float64), rtol=FLOAT_RTOL)
        else:
            assert got.shape == want.shape and (got == want).all(), (got, want)


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_sample_holds_its_kind(kind: str) -> None:
    assert kind in {node.kind for node in graph(kind).nodes.values()}
    verify(graph(kind))


STAGES = {
    **{f"pass:{name}": (lambda g, name=name: run_pipeline(g, until=name)) for name in PASS_NAMES},
    "canonicalize": run_pipeline,
    "text": lambda g: parse_graph(print_graph(g)),
    "json": lambda g: graph_from_json(graph_to_json(g)),
    "prepare": prepare,
}


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_stage_keeps_the_outputs(kind: str, stage: str) -> None:
    sample = SAMPLE[kind]
    result = STAGES[stage](graph(kind))
    verify(result)
    assert_same(kind, [np.asarray(run(result, seq, exact=not sample.float_only)) for seq in runs(sample)])


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_layered_model_keeps_the_outputs(kind: str) -> None:
    sample = SAMPLE[kind]
    model = lower(graph(kind))
    model.verify()
    assert_same(kind, [np.asarray(model.run(seq, exact=not sample.float_only)) for seq in runs(sample)])


@lru_cache(maxsize=None)
def compiled(target: str, kind: str):
    try:
        return compile_to(graph(kind), target, Options(dtype="float64"))
    except LsrlError as e:
        return e


# IREE compiles a module per sample, seconds each: the mlir target's cells run with the slow tests
@pytest.mark.parametrize("target", [pytest.param(t, marks=pytest.mark.slow) if t == "mlir" else t for t in TARGET_NAMES])
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_target_computes_or_refuses_at_the_line(kind: str, target: str) -> None:
    for package in {"jax": ["jax"], "mlir": ["iree.compiler", "iree.runtime"]}.get(target, ["torch"]):
        pytest.importorskip(package)
    result = compiled(target, kind)
    if isinstance(result, LsrlError):
        lines = SAMPLE[kind].source.count("\n")
        assert result.loc is not None and result.loc.file == f"{kind}.lsrl", str(result)
        assert 1 <= result.loc.line <= lines, str(result)
        return
    bound = np.asarray(output_bounds(get_target(target), result, "float64", result.config["d_out"]))
    for seq, want in zip(runs(SAMPLE[kind]), reference(kind)):
        got = run_compiled(result, [seq], "float64")[0]
        want = want.astype(np.float64)
        slack = bound + FLOAT_RTOL * np.abs(want) if SAMPLE[kind].float_only else bound
        assert (np.abs(got - want) <= slack + 2.0**-52 * np.abs(want)).all(), (target, got, want, bound)


@pytest.mark.parametrize("target", ["torch", "jax", pytest.param("mlir", marks=pytest.mark.slow)])
def test_torch_jax_and_mlir_compute_every_kind(target: str) -> None:
    for package in {"mlir": ["iree.compiler", "iree.runtime"]}.get(target, [target]):
        pytest.importorskip(package)
    refused = {k: str(compiled(target, k)) for k in KIND_NAMES if isinstance(compiled(target, k), LsrlError)}
    assert not refused, refused
