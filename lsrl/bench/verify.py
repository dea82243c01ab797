"""``lsrl bench verify``: the ground truth of every case, checked causally (docs/bench.md).

From a case's own files only: the program graph (``program.graph.json``), the obfuscated layered
model (``layers.json``), the labels and bases (``labels.json``) and the inputs
(``data.safetensors``). For every program value the model holds in units of its own
(``intervene.sites``) and every pair of sequences (base k, source k+1), an interchange
intervention (``intervene.interchange``); the case's IIA is the fraction that agree with the
program. The same interventions run inside the target's own module: the torch target's ``model.py``
(``torch_runner``), the stock modules of rnn, lstm, gru, mamba and hawk (``module_runner``, where
``module.json`` says which stage holds each layer). The target's outputs on the data (stored by
``generate``) are compared with the exact outputs too. A case fails (``failures``) where an IIA
is below 1.0, the target's outputs are off, the compiler does not stand behind its float64 outputs
(``generate`` refuses such cases; an older suite may hold them) or it could not be verified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lsrl.bench import cases
from lsrl.bench.case import CASE_FILE
from lsrl.bench.domain import Domain
from lsrl.bench.intervene import (
    LayeredRunner,
    agree,
    expectations,
    interchange,
    sites_from_json,
)
from lsrl.bench.trust import float64_verdict, stated_bound
from lsrl.bench.truth import LABELS_FORMAT, MODULE_FILE


def load_truth(folder: Path):
    """The case's sites and each layer's basis (dense, forward and inverse)."""
    labels = json.loads((folder / "labels.json").read_text())
    if labels.get("format") != LABELS_FORMAT:
        raise ValueError(f"{folder / 'labels.json'} is not a {LABELS_FORMAT} file")
    forward, inverse = [], []
    for layer in labels["layers"]:
        width = layer["width"]
        f, g = np.zeros((width, width)), np.zeros((width, width))
        for k, row in enumerate(layer["units"]):
            for j, v in row:
                f[k, j] = v
        for j, value in enumerate(layer["values"]):
            for k, v in value["direction"]:
                g[j, k] = v
        forward.append(f)
        inverse.append(g)
    return sites_from_json(labels["sites"]), forward, inverse


def verify_case(folder: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    from lsrl.ir.layered import LayeredModel
    from lsrl.ir.serialize import load_graph

    graph = load_graph(folder / "program.graph.json")
    model = LayeredModel.from_json(json.loads((folder / "layers.json").read_text()))
    found, forward, inverse = load_truth(folder)
    data = load_file(str(folder / "data.safetensors"))
    config = json.loads((folder / "model" / "config.json").read_text())
    config = config.get("lsrl", config)  # (a transformers checkpoint's config holds lsrl's under "lsrl")
    inputs = data["inputs"]
    tolerance = stated_bound(config)
    k = len(inputs)
    pairs = [(b, (b + 1) % k) for b in range(k)] if k > 1 else []
    expected = expectations(graph, found, inputs, pairs, _domain(folder, graph)) if pairs else []
    result = _iia(graph, LayeredRunner(model, forward, inverse), found, inputs, pairs, tolerance, expected)
    target = json.loads((folder / CASE_FILE).read_text())["spec"]["target"]
    if target == "torch":
        from lsrl.bench.torch_runner import TorchRunner

        runner = TorchRunner(folder / "model", forward, inverse)
        result["module"] = _iia(graph, runner, found, inputs, pairs, tolerance, expected)
    elif (folder / MODULE_FILE).exists():
        from lsrl.bench.module_runner import ModuleRunner

        runner = ModuleRunner(folder, target, forward, inverse)
        held = [n for n, site in enumerate(found) if all(runner.holds(i) for i in site.units)]
        result["module"] = _iia(graph, runner, [found[n] for n in held], inputs, pairs, tolerance,
                                [expected[n] for n in held] if pairs else [])
        result["module"]["sites_not_held"] = len(found) - len(held)
    result.update(float64=float64_verdict(config),
                  target_agrees=agree(data["model_outputs"], data["outputs"], tolerance))
    return result


def _iia(graph, runner, found, inputs, pairs, tolerance, expected) -> dict[str, Any]:
    outcomes = interchange(graph, runner, found, inputs, pairs, tolerance=tolerance, expected=expected)
    results = [r for outcome in outcomes for r in outcome if r is not None]
    return {"interventions": len(results), "out_of_domain": sum(r is None for o in outcomes for r in o),
            "iia": sum(results) / len(results) if results else None,
            "failed_values": [graph.nodes[site.node].name for site, outcome in zip(found, outcomes) if False in outcome]}


def _domain(folder: Path, graph) -> Domain:
    """The values the case's model was built for (``domain``): its program's promises."""
    from lsrl.backends import get_target

    spec = json.loads((folder / CASE_FILE).read_text())["spec"]
    options = cases.options(spec)
    max_len = options.max_len if get_target(spec["target"]).bounded_length else None
    return Domain(graph, options.input_range, options.integer_inputs, max_len)


def verify(root: str, progress=None) -> dict[str, Any]:
    """Verify every built case of the suite in ``root``; writes ``root/verify.json``."""
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    built = [e for e in manifest["cases"] if not e["error"]]
    report = []
    for n, entry in enumerate(built, 1):
        try:
            result = verify_case(Path(root) / entry["dir"])
        except Exception as e:  # a broken case is reported, and the others still verified
            result = {"error": f"{type(e).__name__}: {e}"}
        case = {"id": entry["id"], "target": entry["target"], "obfuscation": entry["obfuscation"], **result}
        report.append({**case, "failures": failures(case)})
        if progress:
            progress(n, len(built), sum(1 for r in report if r["failures"]))
    summary = {"format": "lsrl.bench.verify", "cases": report, "table": iia_table(report),
               "failing": sum(1 for r in report if r["failures"])}
    (Path(root) / "verify.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def failures(case: dict[str, Any]) -> list[str]:
    """Why a verified case is not a case with verified ground truth (none for a good case)."""
    if case.get("error"):
        return [f"not verified: {case['error']}"]
    found = [f"{level} IIA {r['iia']:.4f} ({', '.join(r['failed_values'])} patched)"
             for level, r in (("layered model", case), ("module", case.get("module", {}))) if r.get("iia") not in (None, 1.0)]
    if not case["target_agrees"]:
        found.append("target off: the target's outputs differ from the exact ones beyond the stated bound")
    if case["float64"] == "unproven":
        found.append("the compiler proves no float64 bound on its outputs (unproven)")
    return found


def iia_table(report: list[dict]) -> dict[str, dict[str, Any]]:
    """Per target and obfuscation: cases, interventions (on the layered model, and inside the
    target's module), the smallest and mean IIA over both levels, and how many cases' target
    outputs disagree with the program, are unproven in float64, or failed."""
    table: dict[str, dict[str, Any]] = {}
    for r in report:
        row = table.setdefault(f"{r['target']}/{r['obfuscation']}", {"cases": 0, "interventions": 0, "iia": [],
                                                                     "in_module": 0, "not_in_module": 0,
                                                                     "out_of_domain": 0, "target_disagrees": 0,
                                                                     "unproven": 0, "errors": 0, "failing": 0})
        row["cases"] += 1
        row["failing"] += 1 if r["failures"] else 0
        if r.get("error"):
            row["errors"] += 1
            continue
        row["interventions"] += r["interventions"]
        row["out_of_domain"] += r["out_of_domain"]
        row["in_module"] += r.get("module", {}).get("interventions", 0)
        row["not_in_module"] += r.get("module", {}).get("sites_not_held", 0)
        row["unproven"] += 1 if r["float64"] == "unproven" else 0
        for level in (r, r.get("module", {})):  # the layered model's interventions, and the module's
            if level.get("iia") is not None:
                row["iia"].append(level["iia"])
        row["target_disagrees"] += 0 if r["target_agrees"] else 1
    for row in table.values():
        values = row.pop("iia")
        row["min_iia"] = min(values) if values else None
        row["mean_iia"] = sum(values) / len(values) if values else None
    return table
