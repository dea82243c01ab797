"""Compiling a program graph for a target: the driver that runs the pipeline end to end.

    compiled = lsrl.compile_to(graph, "torch")           # a backends.Compiled
    compiled.write("out/")                               # model.py, model.safetensors, config.json
    outputs = lsrl.run_compiled(compiled, inputs, "float32")

The driver lowers the graph (``passes.lower``, rebuilding multiplicative gates from ReLUs for
targets without native gates), hands the layered model to the target, and adds what only it
knows: the float32 warnings of the program's constants (with their source locations), the
parameters and a hash of the source files.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Mapping, Optional

import numpy as np

from lsrl.backends import DTYPES, TARGET_NAMES, Compiled, Options, get_target
from lsrl.errors import LsrlError, UsageError
from lsrl.ir.graph import Graph, Loc


def compile_to(
    graph: Graph,
    target: str,
    options: Optional[Options] = None,
    params: Optional[Mapping[str, object]] = None,
    sources: Optional[Mapping[str, str]] = None,
) -> Compiled:
    """Compile ``graph`` for ``target``; ``params`` and ``sources`` (file name -> text, as
    collected by ``compile_file``) are recorded in the config."""
    from lsrl.passes import lower
    from lsrl.passes.precision import float32_warnings

    if target not in TARGET_NAMES:
        raise UsageError(f"unknown target '{target}' (targets: {', '.join(TARGET_NAMES)})")
    options = options or Options()
    _check_dtype_name(options.dtype)
    chosen = get_target(target)
    if options.variant is not None and options.variant not in chosen.variants:
        known = f"its variants: {', '.join(chosen.variants)}" if chosen.variants else "it has no variants"
        raise UsageError(f"target '{target}' has no variant '{options.variant}' ({known})")
    gate_options = {} if chosen.native_gates else {"rebuild_gates": True, "integer_inputs": options.integer_inputs}
    max_len = options.max_len if chosen.bounded_length else None
    model = lower(graph, options.input_range, max_len, **gate_options)
    try:
        compiled = chosen.build(model, options)
    except LsrlError as e:
        e.loc = e.loc or _node_loc(graph, e.node)
        raise
    compiled.warnings = [
        w if w.loc is not None else replace(w, loc=_node_loc(graph, w.node)) for w in compiled.warnings
    ]
    compiled.warnings[:0] = float32_warnings(graph, options.input_range, options.integer_inputs)
    # warnings about a dtype the model does not run in (hawk's float64 weights) do not concern it
    runs_in = chosen.dtypes(options.dtype)
    compiled.warnings = [w for w in compiled.warnings if w.dtype is None or w.dtype in runs_in]
    compiled.config["params"] = {name: str(value) for name, value in (params or {}).items()}
    compiled.config["source_hash"] = source_hash(sources or {})
    return compiled


def run_compiled(compiled: Compiled, inputs: object, dtype: str = "float32") -> np.ndarray:
    """Outputs ``[batch, time, d_out]`` of a compiled model on float inputs ``[batch, time, d_in]``
    (or one sequence ``[time, d_in]``, which gives ``[1, time, d_out]``). A model whose weights
    depend on the dtype (hawk) runs only in the dtype it was compiled for."""
    _check_dtype_name(dtype)
    target = get_target(compiled.target)
    built = compiled.config["dtype"]
    if dtype not in target.dtypes(built):
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


def _node_loc(graph: Graph, node: Optional[int]) -> Optional[Loc]:
    """Where the program wrote the node a target names (passes keep the ids of surviving nodes)."""
    return graph.nodes[node].loc if node in graph.nodes else None


def source_hash(sources: Mapping[str, str]) -> str:
    """sha256 over the program's files (name and text, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()
