"""``lsrl bench verify``: the ground truth of every case, checked causally (docs/bench.md).

From a case's own files only: the program graph (``program.graph.json``), the obfuscated layered
model (``layers.json``), the labels and bases (``labels.json``) and the inputs
(``data.safetensors``). For every program value the model holds in units of its own
(``intervene.sites``) and every pair of sequences (base k, source k+1), an interchange
intervention (``intervene.interchange``); the case's IIA is the fraction that agree with the
program. The target's outputs on the data (stored by ``generate``) are compared with the exact
outputs too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from lsrl.bench.intervene import LayeredRunner, agree, interchange, sites
from lsrl.bench.truth import LABELS_FORMAT


def load_truth(folder: Path):
    """The case's labelled units per layer and each layer's basis (dense, forward and inverse)."""
    from lsrl.ir.layered import UnitLabel

    labels = json.loads((folder / "labels.json").read_text())
    if labels.get("format") != LABELS_FORMAT:
        raise ValueError(f"{folder / 'labels.json'} is not a {LABELS_FORMAT} file")
    units, forward, inverse = [], [], []
    for layer in labels["layers"]:
        width = layer["width"]
        units.append([UnitLabel.from_json(v) for v in layer["values"]])
        f, g = np.zeros((width, width)), np.zeros((width, width))
        for k, row in enumerate(layer["units"]):
            for j, v in row:
                f[k, j] = v
        for j, value in enumerate(layer["values"]):
            for k, v in value["direction"]:
                g[j, k] = v
        forward.append(f)
        inverse.append(g)
    return units, forward, inverse


def verify_case(folder: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    from lsrl.ir.layered import LayeredModel
    from lsrl.ir.serialize import load_graph

    graph = load_graph(folder / "program.graph.json")
    model = LayeredModel.from_json(json.loads((folder / "layers.json").read_text()))
    units, forward, inverse = load_truth(folder)
    data = load_file(str(folder / "data.safetensors"))
    inputs = data["inputs"]
    runner = LayeredRunner(model, forward, inverse)
    k = len(inputs)
    pairs = [(b, (b + 1) % k) for b in range(k)] if k > 1 else []
    results, failed = [], []
    for site in sites(units, graph):
        outcome = interchange(graph, runner, site, inputs, pairs)
        results.extend(outcome)
        if not all(outcome):
            failed.append(graph.nodes[site.node].name)
    return {"interventions": len(results), "iia": sum(results) / len(results) if results else None,
            "failed_values": failed, "target_agrees": agree(data["model_outputs"], data["outputs"])}


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
        report.append({"id": entry["id"], "target": entry["target"], "obfuscation": entry["obfuscation"], **result})
        if progress:
            progress(n, len(built), sum(1 for r in report if r.get("error") or r.get("iia") not in (None, 1.0)))
    summary = {"format": "lsrl.bench.verify", "cases": report, "table": iia_table(report)}
    (Path(root) / "verify.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def iia_table(report: list[dict]) -> dict[str, dict[str, Any]]:
    """Per target and obfuscation: cases, interventions, the smallest and mean IIA, and how many
    cases' target outputs disagree with the program."""
    table: dict[str, dict[str, Any]] = {}
    for r in report:
        row = table.setdefault(f"{r['target']}/{r['obfuscation']}", {"cases": 0, "interventions": 0, "iia": [],
                                                                     "target_disagrees": 0, "errors": 0})
        row["cases"] += 1
        if r.get("error"):
            row["errors"] += 1
            continue
        row["interventions"] += r["interventions"]
        if r["iia"] is not None:
            row["iia"].append(r["iia"])
        row["target_disagrees"] += 0 if r["target_agrees"] else 1
    for row in table.values():
        values = row.pop("iia")
        row["min_iia"] = min(values) if values else None
        row["mean_iia"] = sum(values) / len(values) if values else None
    return table
