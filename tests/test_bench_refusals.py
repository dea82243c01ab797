"""A suite holds only cases whose ground truth interventions confirm (docs/bench.md, "Refused
cases"): ``generate`` refuses a model the compiler cannot stand behind, and ``verify`` fails loudly
on a suite holding a case below IIA 1.0 or with its target off."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load_file, save_file

from lsrl.bench.case import build_case
from lsrl.bench.cases import case_specs, example_programs
from lsrl.cli import main


def test_an_unproven_case_is_refused_with_its_verdict_and_counted(tmp_path, capsys):
    # gates computes products of arbitrary reals with LSRL's 1e10 conditionals: no float64 bound
    out = tmp_path / "suite"
    assert main(["bench", "generate", "--out", str(out), "--programs", "gates.lsrl", "--targets", "torch"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["cases"]
    assert entry["refused"] == "unproven float64" and "unproven" in entry["error"]
    assert entry["float64"] == "unproven" and entry["error_bound"] > 0 and entry["model_error"] >= 0
    assert [p.name for p in (out / entry["dir"]).iterdir()] == ["case.json"]  # not written as a case
    assert manifest["refused"] == {"unproven float64": 1} and manifest["failed"] == 1
    assert "0 cases built, 1 refused (1 unproven float64)" in capsys.readouterr().out
    # nothing is left to verify, and a suite without cases has none failing
    assert main(["bench", "verify", str(out)]) == 0


def test_a_case_whose_target_outputs_are_off_is_refused(tmp_path, monkeypatch):
    import lsrl.targets

    run = lsrl.targets.run_compiled
    monkeypatch.setattr(lsrl.targets, "run_compiled", lambda *a, **k: run(*a, **k) + 0.5)
    spec = case_specs(example_programs("more_ones.lsrl"), ["torch"], ["none"], 2, 0)[0]
    entry = build_case(spec, str(tmp_path / "case"))
    assert entry["refused"] == "target off" and entry["float64"] == "exact"
    assert entry["model_error"] == 0.5 and "beyond the stated bound" in entry["error"]
    monkeypatch.setattr(lsrl.targets, "run_compiled", run)
    assert build_case(spec, str(tmp_path / "case"))["error"] is None  # the same case, its outputs right


def test_verify_fails_loudly_on_a_case_below_iia_one_or_with_its_target_off(tmp_path, capsys):
    out = tmp_path / "suite"
    assert main(["bench", "generate", "--out", str(out), "--programs", "more_ones.lsrl", "--targets", "torch",
                 "--obfuscate", "none,permute", "--datasets", "8"]) == 0
    assert main(["bench", "verify", str(out)]) == 0
    assert "all 2 cases verified" in capsys.readouterr().out

    # the unobfuscated case's labels say the count `ones` is in a unit of the comparison's ReLUs
    labels_file = out / "cases" / "more_ones.torch.none" / "labels.json"
    labels = json.loads(labels_file.read_text())
    (ones,) = [s for s in labels["sites"] if s["name"] == "ones"]
    ones["units"] = {"1": [0]}
    labels_file.write_text(json.dumps(labels))
    # and the permuted case's target outputs move off the program's
    data_file = out / "cases" / "more_ones.torch.permute" / "data.safetensors"
    data = load_file(str(data_file))
    data["model_outputs"] = data["model_outputs"] + np.float64(0.25)
    save_file(data, str(data_file))

    assert main(["bench", "verify", str(out)]) == 1
    printed = capsys.readouterr()
    assert "2 of 2 cases" in printed.err and "fail verification" in printed.err
    report = {c["id"]: c for c in json.loads((out / "verify.json").read_text())["cases"]}
    wrong, off = report["more_ones.torch.none"], report["more_ones.torch.permute"]
    assert wrong["iia"] < 1.0 and wrong["target_agrees"] and any("IIA" in f for f in wrong["failures"])
    assert off["iia"] == 1.0 and off["failures"] == [f for f in off["failures"] if f.startswith("target off")] != []
    assert printed.out.count("FAILS:") == len(wrong["failures"]) + 1
