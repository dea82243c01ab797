"""lsrl bench (docs/bench.md): obfuscations keep the function and move the labels with it, the
interventions agree with outcomes computed by hand, and generate, verify and score work end to
end on a small suite."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsrl.passes import prepare
from lsrl.passes.linearize import linearize

from lsrl.bench.distract import add_distractors
from lsrl.bench.intervene import LayeredRunner, Site, interchange, sites
from lsrl.bench.obfuscate import OBFUSCATIONS, obfuscate
from lsrl.bench.random_programs import behaviour, random_programs, sample
from lsrl.cli import main
from lsrl.corpus import case

ROWS = ["more_ones", "majority", "dyck1", "pattern_abc", "parity", "hold_register"]


def _compiled(name: str):
    row = case(name)
    prepared = prepare(row.program(), row.input_range, None, False, row.integer_inputs)
    return row, prepared, linearize(prepared, row.input_range, None)


def _inputs(row, seed: int, k: int = 3, length: int = 9) -> np.ndarray:
    pool = sorted({tuple(int(v) for v in (t if isinstance(t, (list, tuple)) else [t])) for r in row.runs for t in r.inputs})
    rng = random.Random(seed)
    return np.array([[rng.choice(pool) for _ in range(length)] for _ in range(k)], dtype=np.float64)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ROWS), st.sampled_from(OBFUSCATIONS), st.integers(0, 10**6))
def test_obfuscations_keep_the_exact_outputs_and_move_the_labels(name, kind, seed):
    row, _, model = _compiled(name)
    labelled = add_distractors(model, seed) if kind == "distract" else model
    obfuscated, bases = obfuscate(labelled, kind, seed)
    x = _inputs(row, seed)
    assert (obfuscated.run(x.tolist(), exact=True) == model.run(x.tolist(), exact=True)).all()
    before, after = labelled.trace(x), obfuscated.trace(x)
    for old, new, basis in zip(before, after, bases):
        # each labelled (old) unit is read from the new units by its direction
        assert np.allclose(new @ basis.inverse.dense().T, old, atol=1e-9)


def test_each_obfuscation_changes_the_layers_it_applies_to():
    _, _, model = _compiled("more_ones")  # a state layer of 2 units, a relu layer, the output
    kinds = [layer.kind for layer in model.layers]
    assert kinds == ["state", "relu", "affine"]
    changed = {kind: [not b.is_identity for b in obfuscate(model, kind, 0)[1]] for kind in OBFUSCATIONS}
    assert changed == {"none": [False] * 3, "permute": [True, model.layers[1].width > 1, False],
                       "scale": [False, True, False], "mix": [True, False, False],
                       "distract": [True, model.layers[1].width > 1, False]}  # (the permutation of a grown model)
    assert not obfuscate(model, "mix", 0)[1][0].is_monomial


def _more_ones_expected(base: np.ndarray, source: np.ndarray) -> np.ndarray:
    """more_ones with the state `ones` taken from the source sequence: 1 where the source's count
    of ones is larger than the base's count of zeros (computed by hand)."""
    ones, zeros = np.cumsum(source == 1), np.cumsum(base == 0)
    return (ones > zeros).astype(float)


@pytest.mark.parametrize("kind", OBFUSCATIONS)
def test_interchange_on_more_ones_matches_a_hand_computation(kind):
    row, prepared, model = _compiled("more_ones")
    obfuscated, bases = obfuscate(model, kind, 3)
    ones = next(n for n in prepared.nodes.values() if n.name == "ones")
    site = next(s for s in sites(model, prepared) if s.node == ones.id)
    x = np.array([[1, 1, 1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0, 1, 0]], dtype=np.float64)[..., None]
    runner = LayeredRunner.of(obfuscated, bases)
    source = runner.trace(x)
    mask = np.zeros((1, obfuscated.layers[0].width))
    for units in site.units.values():
        mask[0, units] = 1
    patched = runner.trace(x[1:2], {i: mask for i in site.units}, [s[0:1] for s in source])[-1][0, :, 0]
    assert patched.tolist() == _more_ones_expected(x[1, :, 0], x[0, :, 0]).tolist()
    assert interchange(prepared, runner, [site], x, [(1, 0), (0, 1)]) == [[True, True]]


def test_an_intervention_on_the_wrong_units_fails():
    row, prepared, model = _compiled("more_ones")
    ones = next(s for s in sites(model, prepared) if prepared.nodes[s.node].name == "ones")
    wrong = Site(ones.node, {1: [0]})  # the label says `ones`, the unit holds one of larger's ReLUs
    x = np.array([[1, 1, 1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0, 1, 0]], dtype=np.float64)[..., None]
    assert interchange(prepared, LayeredRunner.of(model, obfuscate(model, "none", 0)[1]), [wrong], x, [(1, 0)]) == [[False]]


def test_torch_module_interventions_match_a_hand_computation(tmp_path):
    pytest.importorskip("torch")
    from lsrl.bench.case import build_case
    from lsrl.bench.cases import case_specs, example_programs
    from lsrl.bench.torch_runner import TorchRunner
    from lsrl.bench.verify import load_truth

    spec = case_specs(example_programs("more_ones.lsrl"), ["torch"], ["mix"], 2, 0)[0]
    entry = build_case(spec, str(tmp_path / "case"))
    assert entry["error"] is None
    found, forward, inverse = load_truth(tmp_path / "case")
    runner = TorchRunner(tmp_path / "case" / "model", forward, inverse)
    names = {n["id"]: n["name"] for n in json.loads((tmp_path / "case" / "graph.json").read_text())["nodes"]}
    ones = next(s for s in found if names[s.node] == "ones")
    x = np.array([[1, 1, 1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0, 1, 0]], dtype=np.float64)[..., None]
    mask = np.zeros((1, forward[0].shape[0]))
    for units in ones.units.values():
        mask[0, units] = 1
    source = runner.trace(x)
    patched = runner.trace(x[1:2], {i: mask for i in ones.units}, [s[0:1] for s in source])[-1][0, :, 0]
    assert patched.tolist() == _more_ones_expected(x[1, :, 0], x[0, :, 0]).tolist()


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.integers(1, 7))
def test_random_programs_parse_verify_and_compile_for_the_suite_targets(seed, size):
    from lsrl.backends import Options

    from lsrl.load import compile_source
    from lsrl.targets import compile_to

    source = sample(random.Random(seed), size)
    graph = compile_source(source, "random.lsrl")  # parses, elaborates and verifies, or raises
    for target in ("torch", "rnn", "lstm", "gru"):
        compile_to(graph, target, Options(integer_inputs=True, max_len=64))
    gated = compile_source(sample(random.Random(seed), size, gated=True), "gated.lsrl")
    compile_to(gated, "torch", Options(integer_inputs=True, max_len=64))


def test_random_programs_reject_constant_and_input_ignoring_programs_and_duplicates():
    assert behaviour("input x[1] in 0..4\nstate s[1] = 0 <- s + 1\noutput s\n", "counts") is None
    assert behaviour("input x[1] in 0..4\noutput 3\n", "constant") is None
    assert behaviour("input x[1] in 0..4\noutput 2 * x\n", "doubles") is not None
    programs = random_programs(6, 4, 1)
    behaviours = [behaviour(p["source"], p["name"]) for p in programs]
    assert None not in behaviours and len(set(behaviours)) == len(behaviours)
    assert [p["source"] for p in random_programs(6, 4, 1)] == [p["source"] for p in programs]  # deterministic
    registers = random_programs(4, 6, 1, gated=True)
    assert any("(1 - " in p["source"] for p in registers)


def _generate(out: Path, *more: str) -> int:
    return main(["bench", "generate", "--out", str(out), "--programs", "more_ones.lsrl", "--random", "1",
                 "--targets", "torch,rnn", "--obfuscate", "none,mix", *more])


def test_generate_verify_and_score_end_to_end(tmp_path, capsys):
    import hashlib

    out = tmp_path / "suite"
    assert _generate(out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # the random program's mixed recurrences are beyond the rounding analysis: refused as unproven
    refused = {e["id"] for e in manifest["cases"] if e["error"]}
    assert refused <= {"random000_s4.torch.mix", "random000_s4.rnn.mix"}
    assert manifest["built"] == 8 and manifest["refused"] == ({"unproven float64": len(refused)} if refused else {})
    for entry in manifest["cases"]:
        for name, file in entry["files"].items():
            assert hashlib.sha256((out / entry["dir"] / name).read_bytes()).hexdigest() == file["sha256"]
    # resumable: a second run builds no built case again (it tries the refused ones again), and
    # writes the same manifest
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("case.json") if p.parent.name not in refused}
    assert _generate(out) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("case.json") if p.parent.name not in refused} == stamps
    again = json.loads((out / "manifest.json").read_text())
    assert [c for c in again["cases"] if not c["error"]] == [c for c in manifest["cases"] if not c["error"]]
    assert again["refused"] == manifest["refused"]

    assert main(["bench", "verify", str(out)]) == 0
    report = json.loads((out / "verify.json").read_text())
    assert all(c["iia"] == 1.0 and c["target_agrees"] for c in report["cases"])
    assert all(c["module"]["iia"] == 1.0 for c in report["cases"] if c["target"] == "torch")
    assert len(report["cases"]) == 8 - len(refused) and report["failing"] == 0

    # a submission claiming exactly the labelled units of the unobfuscated cases, and one wrong claim
    claims = {}
    for entry in (e for e in manifest["cases"] if not e["error"]):
        labels = json.loads((out / entry["dir"] / "labels.json").read_text())
        if entry["obfuscation"] == "none":
            claims[entry["id"]] = {"units": [
                {"layer": i, "unit": k, "value": f"{v['name']}[{v['index']}]"}
                for i, layer in enumerate(labels["layers"][:-1]) for k, v in enumerate(layer["values"])
                if v["role"] in ("value", "carry") and v["node"] is not None]}
    first = next(iter(claims))
    claims[first]["units"].append({"layer": 0, "unit": 0, "value": "no_such_value[0]"})
    submission = tmp_path / "submission.json"
    submission.write_text(json.dumps({"format": "lsrl.bench.submission", "cases": claims}))
    capsys.readouterr()
    assert main(["bench", "score", str(out), str(submission)]) == 0
    overall = json.loads(capsys.readouterr().out.split("overall: ")[1])
    right = sum(len(c["units"]) for c in claims.values()) - 1
    assert overall["right"] == right and overall["precision"] == right / (right + 1)
    assert 0 < overall["recall"] < 1  # the mixed cases' values are not claimed


def test_score_checks_directions(tmp_path):
    from lsrl.bench.case import build_case
    from lsrl.bench.cases import case_specs, example_programs
    from lsrl.bench.score import score_case

    spec = case_specs(example_programs("more_ones.lsrl"), ["torch"], ["mix"], 2, 0)[0]
    folder = tmp_path / "case"
    build_case(spec, str(folder))
    labels = json.loads((folder / "labels.json").read_text())
    state = labels["layers"][0]
    assert state["basis"] == "directions"
    width = state["width"]

    def direction(j: int) -> list[float]:
        d = [0.0] * width
        for k, v in state["values"][j]["direction"]:
            d[k] = v
        return d

    names = [f"{v['name']}[{v['index']}]" for v in state["values"]]
    mixed = [a + b for a, b in zip(direction(0), direction(1))]  # reads both values: right for neither
    result = score_case(folder, {"units": [{"layer": 0, "direction": direction(0), "value": names[0]},
                                           {"layer": 0, "direction": mixed, "value": names[0]}]})
    assert (result["claims"], result["right"]) == (2, 1)


def test_generate_records_a_refused_case_and_builds_the_others(tmp_path):
    out = tmp_path / "suite"
    command = ["bench", "generate", "--out", str(out), "--programs", "gated/hold_register.lsrl", "--targets", "torch,rnn"]
    assert main(command) == 0
    cases = {c["id"]: c for c in json.loads((out / "manifest.json").read_text())["cases"]}
    assert cases["hold_register.torch.none"]["error"] is None
    refused = cases["hold_register.rnn.none"]
    assert case("hold_register").refused_by["rnn"] in refused["error"] and refused["refused"] == "compiler refusal"
    # continuing the run builds the failed case again, not the built one
    stamps = {name: (out / "cases" / name / "case.json").stat().st_mtime_ns for name in cases}
    assert main(command) == 0
    again = {name: (out / "cases" / name / "case.json").stat().st_mtime_ns for name in cases}
    assert again["hold_register.torch.none"] == stamps["hold_register.torch.none"]
    assert again["hold_register.rnn.none"] != stamps["hold_register.rnn.none"]


def test_ray_executor_is_refused_without_ray(tmp_path, capsys):
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ImportError:
        pass
    assert _generate(tmp_path / "suite", "--executor", "ray") == 1
    assert "ray" in capsys.readouterr().err


def test_distractors_carry_nothing_and_keep_the_sites():
    from lsrl.ir.layered import FREE

    row, prepared, model = _compiled("majority")
    x = _inputs(row, 5, k=4)
    grown_layers = set()
    for seed in range(12):
        grown = add_distractors(model, seed)
        grown_layers.add(len(grown.layers) - len(model.layers))
        assert (grown.run(x.tolist(), exact=True) == model.run(x.tolist(), exact=True)).all()
        for layer in grown.layers[:-1]:
            free = [j for j, unit in enumerate(layer.units) if unit.role == FREE]
            assert 1 <= len(free) <= 2
        assert [s.node for s in sites(grown, prepared)] == [s.node for s in sites(model, prepared)]
        obfuscated, bases = obfuscate(grown, "distract", seed)
        found = sites(grown, prepared)
        pairs = [(0, 1), (1, 2), (2, 3), (3, 0)]
        outcomes = interchange(prepared, LayeredRunner.of(obfuscated, bases), found, x, pairs)
        assert all(r is not False for outcome in outcomes for r in outcome)
    assert grown_layers == {0, 1}  # some seeds add an identity layer, some do not
    # distractors vary with the input (a ReLU one may be always 0), in the state layers too
    trace = grown.trace(x)
    free = [(i, j) for i, layer in enumerate(grown.layers[:-1]) for j, u in enumerate(layer.units) if u.role == FREE]
    assert sum(np.ptp(trace[i][..., j]) > 0 for i, j in free) >= len(free) / 2
    assert any(np.ptp(trace[i][..., j]) > 0 for i, j in free if grown.layers[i].kind == "state")


def test_distract_case_verifies_and_claims_on_distractors_are_false_positives(tmp_path):
    pytest.importorskip("torch")
    from lsrl.bench.case import build_case
    from lsrl.bench.cases import case_specs, example_programs
    from lsrl.bench.score import score_case
    from lsrl.bench.verify import verify_case

    spec = case_specs(example_programs("more_ones.lsrl"), ["torch"], ["distract"], 4, 0)[0]
    folder = tmp_path / "case"
    assert build_case(spec, str(folder))["error"] is None
    result = verify_case(folder)
    assert result["iia"] == 1.0 and result["module"]["iia"] == 1.0 and result["interventions"] > 0
    labels = json.loads((folder / "labels.json").read_text())
    graph = json.loads((folder / "graph.json").read_text())
    assert [n["name"] for n in graph["nodes"]] == [n.name for n in _compiled("more_ones")[1].topological_order()]
    claims, distractors = [], 0
    for i, layer in enumerate(labels["layers"][:-1]):
        for k, row in enumerate(layer["units"]):
            (j, _), = row  # a permutation: one labelled unit per unit
            value = layer["values"][j]
            if value["role"] == "distractor":
                distractors += 1
                claims.append({"layer": i, "unit": k, "value": f"distractor[{value['index']}]"})
                claims.append({"layer": i, "unit": k, "value": "ones[0]"})
            else:
                claims.append({"layer": i, "unit": k, "value": f"{value['name']}[{value['index']}]"})
    assert distractors >= 2
    result = score_case(folder, {"units": claims})
    assert result["right"] == len(claims) - 2 * distractors and result["recall"] == 1.0
