"""Compiling a program graph for a target: the driver that runs the pipeline end to end.

    compiled = lsrl.compile_to(graph, "torch")           # a backends.Compiled
    compiled.write("out/")                               # model.py, model.safetensors, config.json
    outputs = lsrl.run_compiled(compiled, inputs, "float32")

The driver lowers the graph (``passes.lower``, rebuilding multiplicative gates from ReLUs for
targets without native gates), hands the layered model to the target, and adds what only it
knows: the verdict of the target's stated error bounds per dtype (``backends.verdict``:
``config["precision"]``, and a warning at the output's source line where a dtype is not proven),
the source locations of the target's warnings and of every unit's node (the config's labels),
the parameters and a hash of the source files.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Callable, Mapping, Optional

import numpy as np

from lsrl.backends import DTYPES, TARGET_NAMES, Compiled, Options, get_target
from lsrl.errors import LsrlError, UsageError
from lsrl.ir.graph import Graph, Loc, input_tokens
from lsrl.passes.ranges import declared_promises


def compile_to(
    graph: Graph,
    target: str,
    options: Optional[Options] = None,
    params: Optional[Mapping[str, object]] = None,
    sources: Optional[Mapping[str, str]] = None,
    transform: Optional[Callable] = None,
) -> Compiled:
    """Compile ``graph`` for ``target``; ``params`` and ``sources`` (file name -> text, as
    collected by ``compile_file``) are recorded in the config. ``transform(model, prepared)``, if
    given, replaces the layered model before the target builds it (``prepared``: the graph it was
    scheduled from; lsrl.bench's obfuscations, which keep the function)."""
    from lsrl.backends.verdict import judge, output_facts

    if target not in TARGET_NAMES:
        raise UsageError(f"unknown target '{target}' (targets: {', '.join(TARGET_NAMES)})")
    options = options or Options()
    _check_dtype_name(options.dtype)
    chosen = get_target(target)
    if options.variant is not None and options.variant not in chosen.variants:
        known = f"its variants: {', '.join(chosen.variants)}" if chosen.variants else "it has no variants"
        raise UsageError(f"target '{target}' has no variant '{options.variant}' ({known})")
    if options.format is not None and options.format not in chosen.formats:
        known = f"its formats: {', '.join(chosen.formats)}" if chosen.formats else "it writes its own files only"
        raise UsageError(f"target '{target}' has no --format {options.format} ({known})")
    if options.format is not None:
        _check_token_program(graph, options.format)
    model, prepared, options = lower_for_target(graph, chosen, options, transform)
    try:
        compiled = chosen.build(model, options)
    except LsrlError as e:
        e.loc = e.loc or _node_loc(prepared, e.node)
        raise
    facts = output_facts(model, options)
    verdicts, precision_warnings = judge(chosen, compiled, facts, options)
    if options.format is not None:
        from lsrl.backends.hf import output_token_warnings

        try:
            precision_warnings += output_token_warnings(facts, options.tokens[1])
        except LsrlError as e:
            e.loc = e.loc or _node_loc(prepared, e.node)
            raise
    compiled.config["precision"] = verdicts
    compiled.warnings = [
        w if w.loc is not None else replace(w, loc=_node_loc(prepared, w.node))
        for w in [*compiled.warnings, *precision_warnings]
    ]
    _locate_labels(compiled.config, prepared)
    compiled.config["params"] = {name: str(value) for name, value in (params or {}).items()}
    compiled.config["source_hash"] = source_hash(sources or {})
    return compiled


def lower_for_target(graph: Graph, target, options: Options, transform: Optional[Callable] = None):
    """The layered model ``target`` builds from (after ``transform``, as in ``compile_to``), the graph
    linearize scheduled and the options with the program's declared promises and the model's
    schedule plan; a layer the target cannot compute is refused at its line."""
    from lsrl.passes import prepare
    from lsrl.passes.linearize import linearize

    input_range, integer_inputs = declared_promises(graph, options.input_range, options.integer_inputs)
    options = replace(options, input_range=input_range, integer_inputs=integer_inputs, tokens=input_tokens(graph.input))
    max_len = options.max_len if target.bounded_length else None
    # the graph linearize schedules: the program's nodes (same ids) and those the passes added, every
    # one with the source location it came from, which warnings and labels point at
    prepared = prepare(graph, options.input_range, max_len, not target.native_gates, options.integer_inputs,
                       "matrix" in target.layer_kinds)
    model = linearize(prepared, options.input_range, max_len)
    if transform is not None:
        model = transform(model, prepared)
    _check_layer_kinds(target, model, prepared)
    return model, prepared, replace(options, plan=_schedule(target, model, options))


def _schedule(target, model, options: Options):
    """The model's schedule plan in the form the user asked for (``auto``: for ``--max-len`` steps)."""
    from lsrl.passes.schedule import schedule

    if options.schedule not in target.schedules:
        raise UsageError(f"target '{target.name}' has no --schedule {options.schedule} (its schedules: "
                         f"{', '.join(target.schedules)})")
    if options.chunk < 1:
        raise UsageError(f"--chunk must be at least 1, got {options.chunk}")
    return schedule(model, options.schedule, options.chunk, options.max_len, target.crossovers)


def _check_token_program(graph: Graph, format: str) -> None:
    """A checkpoint reads one token id and writes one per step: refuse other programs where they say so."""
    if graph.input.dim != 1:
        raise LsrlError(f"--format {format} needs a token id per step, but the input {graph.input.name} has length "
                        f"{graph.input.dim}", graph.input.loc)
    tokens = input_tokens(graph.input)
    if tokens is not None and tokens[0] < 0:
        raise LsrlError(f"--format {format} needs token ids from 0, but the input's tokens are {tokens[0]}..{tokens[1]}",
                        graph.input.loc)
    if graph.output_dim != 1:
        extra = graph.outputs[1] if len(graph.outputs) > 1 else graph.outputs[0]
        raise LsrlError(f"--format {format} needs one token id per step as the output, but the program outputs "
                        f"{graph.output_dim} values per step", graph.nodes[extra.node].loc)


def run_compiled(compiled: Compiled, inputs: object, dtype: str = "float32") -> np.ndarray:
    """Outputs ``[batch, time, d_out]`` of a compiled model on float inputs ``[batch, time, d_in]``
    (or one sequence ``[time, d_in]``, which gives ``[1, time, d_out]``). A model whose weights
    depend on the dtype (hawk) runs only in the dtype it was compiled for."""
    _check_dtype_name(dtype)
    target = get_target(compiled.target)
    built = compiled.config["dtype"]
    if dtype not in target.dtypes(built, compiled.config.get("checkpoint")):
        raise UsageError(
            f"this {compiled.target} model was compiled for {built} and is not run in {dtype}: the {compiled.target} "
            f"target's weights depend on the dtype; recompile it for {dtype} (lsrl compile --dtype {dtype}, "
            f"lsrl run --dtype {dtype}, or Options(dtype=\"{dtype}\"))")
    array = np.asarray(inputs, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    return target.run(compiled, array, dtype)


def _check_dtype_name(dtype: str) -> None:
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype '{dtype}' (dtypes: {', '.join(DTYPES)})")


def _check_layer_kinds(target, model, graph: Graph) -> None:
    """Refuse a model with a layer the target cannot compute, at the program node that needs it."""
    for layer in model.layers:
        if layer.kind in target.layer_kinds:
            continue
        needs = next((u.node for u in layer.units if u.role == "value" and u.node in graph.nodes), None)
        what = graph.nodes[needs].kind if needs is not None else layer.kind
        able = [name for name in TARGET_NAMES if layer.kind in get_target(name).layer_kinds]
        named = ", ".join(able[:-1]) + " and " + able[-1] if len(able) > 1 else "".join(able) or "no target"
        raise LsrlError(
            f"the {target.name} target cannot compute {what} (a {layer.kind} layer); {named} can",
            loc=_node_loc(graph, needs),
        )


def _node_loc(graph: Graph, node: Optional[int]) -> Optional[Loc]:
    """Where the program wrote the node a target names (passes keep the ids of surviving nodes)."""
    return graph.nodes[node].loc if node in graph.nodes else None


def _locate_labels(config: dict, graph: Graph) -> None:
    """Complete the config's unit labels with what only the program graph knows: the nodes of the
    input and output units, and where the program wrote every unit's node."""
    outputs = [(o.node, i) for o in graph.outputs for i in range(graph.nodes[o.node].dim)]
    for label in config["input_labels"]:
        label["node"] = graph.input.id
    for label, (node, unit) in zip(config["output_labels"], outputs):
        label["node"], label["unit"] = node, unit
    units = [u for layer in config["layers"] for u in layer["units"]]
    for label in config["input_labels"] + config["output_labels"] + units:
        loc = _node_loc(graph, label["node"])
        label["loc"] = None if loc is None else {"file": loc.file, "line": loc.line, "col": loc.col}


def source_hash(sources: Mapping[str, str]) -> str:
    """sha256 over the program's files (name and text, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()
