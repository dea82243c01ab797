"""``lsrl bench score``: a researcher's claims scored against the ground truth (docs/bench.md,
"Submissions").

A value is named as the program names it, ``name[index]`` (the labels of ``labels.json`` and
``graph.json``). Per case a submission claims units (``{"layer", "unit", "value"}``: the unit
carries the value) or directions (``{"layer", "direction", "value"}``: the dot product of the
direction with the layer's units is a function of the value alone), and a circuit: edges
``[reader, read]`` between values (by name, without the index).

- A unit claim is right when the unit holds the value (alone, or mixed with others);
  a direction claim when the direction reads the value's labelled units and no others. A
  distractor (``distract``) holds no value: every claim on one is wrong, whatever it names.
- Precision: right claims over claims. Recall: (layer, value) pairs of the ground truth (values
  held in units of their own, roles value and carry) that some right claim finds, over all.
- Circuit edges are compared with the edges of ``graph.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lsrl.bench.truth import DISTRACTOR

SUBMISSION_FORMAT = "lsrl.bench.submission"
DIRECTION_TOLERANCE = 1e-6  # relative: a direction's weight on other values' units counts below it


def _value(label: dict) -> str:
    return f"{label['name']}[{label['index']}]"


def truth(folder: Path) -> tuple[list[dict], set[tuple[int, str]], set[tuple[str, str]]]:
    """A case's layers (labels.json), the (layer, value) pairs it holds, and its circuit's edges."""
    labels = json.loads((folder / "labels.json").read_text())
    graph = json.loads((folder / "graph.json").read_text())
    held = {(i, _value(v)) for i, layer in enumerate(labels["layers"][:-1]) for v in layer["values"]
            if v["role"] in ("value", "carry") and v["node"] is not None}
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    edges = {(n["name"], names[r]) for n in graph["nodes"] for r in n["reads"]}
    return labels["layers"], held, edges


def _unit_right(layers: list[dict], claim: dict) -> tuple[bool, tuple[int, str] | None]:
    layer, value = claim.get("layer"), claim.get("value")
    if not isinstance(layer, int) or not 0 <= layer < len(layers) or not isinstance(value, str):
        return False, None
    truth = layers[layer]
    if "unit" in claim:
        unit = claim["unit"]
        if not isinstance(unit, int) or not 0 <= unit < truth["width"]:
            return False, None
        holds = {_value(truth["values"][j]) for j, _ in truth["units"][unit] if truth["values"][j]["role"] != DISTRACTOR}
        return value in holds, (layer, value)
    direction = np.asarray(claim.get("direction", []), dtype=np.float64)
    if direction.shape != (truth["width"],):
        return False, None
    forward = np.zeros((truth["width"], truth["width"]))
    for k, row in enumerate(truth["units"]):
        for j, v in row:
            forward[k, j] = v
    reads = np.abs(direction @ forward)  # the weight on each labelled (old) unit
    mine = np.array([_value(v) == value and v["role"] != DISTRACTOR for v in truth["values"]])
    scale = reads.max(initial=0.0)
    right = scale > 0 and bool(mine[reads > DIRECTION_TOLERANCE * scale].all())
    return right, (layer, value)


def score_case(folder: Path, claims: dict) -> dict[str, Any]:
    layers, held, edges = truth(folder)
    right, found = 0, set()
    units = claims.get("units", [])
    for claim in units:
        ok, key = _unit_right(layers, claim) if isinstance(claim, dict) else (False, None)
        right += ok
        if ok:
            found.add(key)
    circuit = {tuple(e) for e in claims.get("circuit", []) if isinstance(e, list) and len(e) == 2}
    return {
        "claims": len(units), "right": right, "truth": len(held), "found": len(found & held),
        "precision": right / len(units) if units else None, "recall": len(found & held) / len(held) if held else None,
        "edges_claimed": len(circuit), "edges_right": len(circuit & edges), "edges_truth": len(edges),
    }


def score(root: str, submission: dict) -> dict[str, Any]:
    """Per case and overall (over every case the suite built: a case without claims finds
    nothing) precision and recall of units and of circuit edges."""
    if not isinstance(submission, dict) or submission.get("format") != SUBMISSION_FORMAT:
        raise ValueError(f"a submission is a JSON object with \"format\": \"{SUBMISSION_FORMAT}\" (docs/bench.md)")
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    per_case = {}
    for entry in manifest["cases"]:
        if not entry["error"]:
            per_case[entry["id"]] = score_case(Path(root) / entry["dir"], submission.get("cases", {}).get(entry["id"], {}))
    total = {k: sum(c[k] for c in per_case.values()) for k in
             ("claims", "right", "truth", "found", "edges_claimed", "edges_right", "edges_truth")}
    overall = {
        "cases": len(per_case),
        "precision": total["right"] / total["claims"] if total["claims"] else None,
        "recall": total["found"] / total["truth"] if total["truth"] else None,
        "circuit_precision": total["edges_right"] / total["edges_claimed"] if total["edges_claimed"] else None,
        "circuit_recall": total["edges_right"] / total["edges_truth"] if total["edges_truth"] else None,
        **total,
    }
    return {"cases": per_case, "overall": overall}
