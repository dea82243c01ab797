"""Two probing baselines on a benchmark suite, scored against its ground truth (docs/bench.md).

    python3 benchmarks/bench_probe.py SUITE_DIR [--out submissions/] [--common]

For every built case, from its ``data.safetensors`` (the activations of every layer, ``layers.i``,
and the program's values, ``values.NODE``, which a researcher computes from the program) and the
names of the program's values (``graph.json``):

- ``unit``: each unit is claimed for the program value it correlates with best, where
  ``|corr| >= 0.999`` (a probe that assumes one value per unit);
- ``linear``: per layer and value, least squares on the first half of the sequences; where the
  fit explains the second half (R^2 >= 0.999), the direction is claimed for the value.

Writes both submissions (``lsrl.bench.submission``), scores them with ``lsrl bench score``'s
function and prints precision and recall per obfuscation: a benchmark that discriminates gives
the unit probe a high recall on unobfuscated cases and a low one on mixed cases. It also counts
the unit probe's claims on distractor units (``distract``), every one a false positive.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from lsrl.bench.score import SUBMISSION_FORMAT, score, truth
from lsrl.bench.truth import DISTRACTOR

CORRELATION, R2 = 0.999, 0.999


def program_values(folder: Path, data: dict) -> dict[str, np.ndarray]:
    """Each program value ``name[index]`` with its values over every sequence and step (flat)."""
    graph = json.loads((folder / "graph.json").read_text())
    values = {}
    for node in graph["nodes"]:
        array = data[f"values.{node['id']}"]
        for unit, (name, index) in enumerate(node["labels"]):
            values.setdefault(f"{name}[{index}]", array[..., unit])
    return values


def _standardized(columns: np.ndarray) -> np.ndarray:
    """Each column centred and scaled to unit norm (a constant column stays 0)."""
    centred = columns - columns.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def unit_probe(layers: list[np.ndarray], values: dict[str, np.ndarray]) -> list[dict]:
    names = [n for n, v in values.items() if np.std(v) > 0]
    if not names:
        return []
    targets = _standardized(np.stack([values[n].ravel() for n in names], axis=1))
    claims = []
    for i, layer in enumerate(layers):
        correlation = np.abs(_standardized(layer.reshape(-1, layer.shape[-1])).T @ targets)  # [units, values]
        for k, row in enumerate(correlation):
            best = int(np.argmax(row))
            if row[best] >= CORRELATION:
                claims.append({"layer": i, "unit": k, "value": names[best]})
    return claims


def linear_probe(layers: list[np.ndarray], values: dict[str, np.ndarray]) -> list[dict]:
    claims = []
    for i, layer in enumerate(layers):
        half = max(1, layer.shape[0] // 2)
        train, test = layer[:half].reshape(-1, layer.shape[-1]), layer[half:].reshape(-1, layer.shape[-1])
        design = np.hstack([train, np.ones((len(train), 1))])
        for name, value in values.items():
            y_train, y_test = value[:half].ravel(), value[half:].ravel()
            if np.std(y_test) == 0:
                continue
            weights = np.linalg.lstsq(design, y_train, rcond=None)[0]
            predicted = test @ weights[:-1] + weights[-1]
            r2 = 1 - np.mean((predicted - y_test) ** 2) / np.var(y_test)
            if r2 >= R2:
                claims.append({"layer": i, "direction": weights[:-1].tolist(), "value": name})
    return claims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite")
    parser.add_argument("--out", default=None, help="folder for the two submissions (default: the suite's)")
    parser.add_argument("--common", action="store_true",
                        help="only the programs and targets built in every obfuscation of the suite (a like-for-like table)")
    args = parser.parse_args()
    root = Path(args.suite)
    manifest = json.loads((root / "manifest.json").read_text())
    if args.common:
        obfuscations = {e["obfuscation"] for e in manifest["cases"]}
        built: dict[tuple, set] = {}
        for e in manifest["cases"]:
            if not e["error"]:
                built.setdefault((e["program"], e["target"]), set()).add(e["obfuscation"])
        manifest["cases"] = [e for e in manifest["cases"] if built.get((e["program"], e["target"])) == obfuscations]
    submissions = {"unit": {}, "linear": {}}
    decoded: dict[str, list[int]] = {}  # obfuscation -> [held pairs the linear probe decodes, held pairs]
    distractors: dict[str, list[int]] = {}  # obfuscation -> [unit claims on a distractor, unit claims]
    for entry in manifest["cases"]:
        if entry["error"]:
            continue
        folder = root / entry["dir"]
        data = load_file(str(folder / "data.safetensors"))
        layers = [data[f"layers.{i}"] for i in range(entry["layers"] - 1)]  # hidden layers only
        values = program_values(folder, data)
        submissions["unit"][entry["id"]] = {"units": unit_probe(layers, values)}
        submissions["linear"][entry["id"]] = {"units": linear_probe(layers, values)}
        truth_layers, held, _ = truth(folder)
        on_distractors = distractors.setdefault(entry["obfuscation"], [0, 0])
        for claim in submissions["unit"][entry["id"]]["units"]:
            holds = [truth_layers[claim["layer"]]["values"][j]["role"] for j, _ in truth_layers[claim["layer"]]["units"][claim["unit"]]]
            on_distractors[0] += holds == [DISTRACTOR]
            on_distractors[1] += 1
        fits = {(c["layer"], c["value"]) for c in submissions["linear"][entry["id"]]["units"]}
        counts = decoded.setdefault(entry["obfuscation"], [0, 0])
        counts[0] += len(fits & held)
        counts[1] += len(held)
    out = Path(args.out) if args.out else root
    out.mkdir(parents=True, exist_ok=True)
    print("| probe | obfuscation | cases | claims | precision | recall |")
    print("|---|---|---|---|---|---|")
    for probe, cases in submissions.items():
        submission = {"format": SUBMISSION_FORMAT, "cases": cases}
        (out / f"submission_{probe}.json").write_text(json.dumps(submission))
        result = score(str(root), submission)
        by_obfuscation: dict[str, list] = {}
        for entry in manifest["cases"]:
            if entry["id"] in result["cases"]:
                by_obfuscation.setdefault(entry["obfuscation"], []).append(result["cases"][entry["id"]])
        for obfuscation, rows in sorted(by_obfuscation.items()):
            claims, right = sum(r["claims"] for r in rows), sum(r["right"] for r in rows)
            held, found = sum(r["truth"] for r in rows), sum(r["found"] for r in rows)
            print(f"| {probe} | {obfuscation} | {len(rows)} | {claims} | {right / claims if claims else 0:.3f} | "
                  f"{found / held if held else 0:.3f} |")
    print("\nlinear probe, held-out R^2 >= 0.999 (the value is decodable, wherever its direction lies):")
    for obfuscation, (fit, held) in sorted(decoded.items()):
        print(f"  {obfuscation}: {fit}/{held} (layer, value) pairs of the ground truth decoded ({fit / max(held, 1):.3f})")
    print("\nunit probe claims on distractor units (false positives whatever they name):")
    for obfuscation, (wrong, claims) in sorted(distractors.items()):
        print(f"  {obfuscation}: {wrong} of {claims} claims")


if __name__ == "__main__":
    main()
