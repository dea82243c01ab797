"""One case of a suite, built into its folder (docs/bench.md, "A case's files").

``build_case(spec, folder)`` is the task function every executor runs: it compiles the program for
the case's target with the case's obfuscation applied to the layered model before the target
builds it, and writes the target's files (``model/``, with every hidden unit anonymous), the
ground truth (``labels.json``, ``graph.json``, ``program.graph.json``; ``module.json`` where the
target is a stock module: where it holds each layer), the data
(``data.safetensors``) and ``case.json``. A case whose model the compiler cannot stand behind
(``trust.distrust``) is refused before any of its files is written: its folder holds only
``case.json``, with the reason.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from lsrl.bench import cases
from lsrl.bench.distract import add_distractors
from lsrl.bench.intervene import LayeredRunner, sites
from lsrl.bench.obfuscate import anonymous, obfuscate, unit_bounds
from lsrl.bench.trust import distrust
from lsrl.bench.truth import MODULE_FILE, graph_json, labels_json, readings_json

CASE_FILE = "case.json"
COMPILER, CRASH = "compiler refusal", "error"  # the reasons a case is not built besides trust's


class Untrusted(Exception):
    """A model the compiler cannot stand behind (``trust.distrust``): the case is refused."""

    def __init__(self, facts: dict[str, Any]):
        super().__init__(facts["message"])
        self.facts = facts


def compile_program(program: dict[str, Any]):
    """The program's graph, its source files (name -> text) and its parameters."""
    from lsrl.corpus import case
    from lsrl.load import compile_file, compile_source

    sources: dict[str, str] = {}
    if program["kind"] == "example":
        row = case(program["row"])
        return compile_file(row.source_path, row.params, sources), sources, row.params
    return compile_source(program["source"], f"{program['name']}.lsrl", {}, sources), sources, {}


def build_case(spec: dict[str, Any], folder: str) -> dict[str, Any]:
    """Build the case into ``folder``; return its manifest entry (files and their sha256, sizes,
    or the error that stopped it and its reason: ``refused``)."""
    from lsrl.errors import LsrlError

    start = time.time()
    out = Path(folder)
    shutil.rmtree(out, ignore_errors=True)  # (a refused case leaves no files but case.json)
    out.mkdir(parents=True)
    entry: dict[str, Any] = {"id": spec["id"], "program": spec["program"]["name"], "target": spec["target"],
                             "obfuscation": spec["obfuscation"], "dir": str(Path("cases") / spec["id"])}
    try:
        entry.update(_build(spec, out))
        entry["error"] = entry["refused"] = None
    except Untrusted as e:
        facts = dict(e.facts)
        entry.update(error=facts.pop("message"), refused=facts.pop("reason"), **facts)
    except LsrlError as e:
        entry["error"] = f"{e.loc}: {e.message}" if getattr(e, "loc", None) else str(e.message)
        entry["refused"] = COMPILER
    except Exception as e:  # one failure never stops the suite: it is recorded in the manifest
        entry["error"] = f"{type(e).__name__}: {e}"
        entry["refused"] = CRASH
    entry["seconds"] = round(time.time() - start, 3)
    (out / CASE_FILE).write_text(json.dumps({"spec": spec, "entry": entry}, indent=1) + "\n")
    return entry


def _build(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    from safetensors.numpy import save_file

    from lsrl.ir.interpret import NotExactError
    from lsrl.ir.interpret import trace as trace_graph
    from lsrl.ir.serialize import save_graph
    from lsrl.targets import compile_to, run_compiled

    graph, sources, params = compile_program(spec["program"])
    options = cases.options(spec)
    built: dict[str, Any] = {}

    def transform(model, prepared):
        if spec["obfuscation"] == "distract":  # the labelled model is the grown one, distractors and all
            model = add_distractors(model, spec["seed"])
        bounds = unit_bounds(model, options) if spec["obfuscation"] == "mix" else None
        obfuscated, bases = obfuscate(model, spec["obfuscation"], spec["seed"], bounds)
        built.update(labelled=model, prepared=prepared, model=obfuscated, bases=bases)
        return anonymous(obfuscated)

    compiled = compile_to(graph, spec["target"], options, params, sources, transform)
    inputs = cases.sample_inputs(spec, graph.input.dim)
    prepared = built["prepared"]
    try:  # the exact outputs, where the program has no float functions
        exact_values = trace_graph(prepared, inputs.tolist(), exact=True)
        values = {k: np.asarray(v, dtype=np.float64) for k, v in exact_values.items()}
    except NotExactError:
        values = trace_graph(prepared, inputs)
    outputs = np.concatenate([values[o.node] for o in prepared.outputs], axis=-1)
    model_outputs = run_compiled(compiled, inputs, "float64")
    refusal = distrust(compiled.config, model_outputs, outputs)
    if refusal is not None:
        raise Untrusted(refusal)

    compiled.write(out / "model")
    labelled, model, bases = built["labelled"], built["model"], built["bases"]
    (out / "program.lsrl").write_text("\n".join(f"# {name}\n{text}" for name, text in sources.items()))
    (out / "labels.json").write_text(json.dumps(labels_json(labelled, bases, prepared)))
    (out / "graph.json").write_text(json.dumps(graph_json(prepared)))
    (out / "layers.json").write_text(json.dumps(anonymous(model).to_json()))
    save_graph(prepared, out / "program.graph.json")
    if compiled.readings is not None:  # where the target's stock module holds each layer
        (out / MODULE_FILE).write_text(json.dumps(readings_json(compiled.readings)))

    layer_traces = LayeredRunner.of(model, bases).trace(inputs)
    tensors = {"inputs": inputs, "outputs": outputs, "model_outputs": model_outputs}
    tensors.update({f"values.{node.id}": values[node.id] for node in prepared.topological_order()})
    for i in range(len(model.layers)):
        tensors[f"layers.{i}"] = layer_traces[i]
    save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, str(out / "data.safetensors"))
    return {"sites": len(sites(labelled, prepared)), "layers": len(model.layers),
            "units": sum(l.width for l in model.layers), "warnings": [w.message for w in compiled.warnings],
            "model_error": float(np.max(np.abs(tensors["model_outputs"] - tensors["outputs"]), initial=0.0))}
