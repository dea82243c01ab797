"""The commands that read a compiled model's directory (docs/cli.md, docs/growth.md):
``lsrl run DIR --input ...`` runs it, ``lsrl grow DIR -o OUT ...`` grows it.

A directory is what ``lsrl compile -o`` (or ``lsrl grow -o``) wrote: ``config.json``,
``model.safetensors`` and the generated sources (``backends.target.Compiled.read``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lsrl.backends.growth import current_sizes, grow_compiled, setting_names, size_names
from lsrl.backends.target import Compiled
from lsrl.errors import UsageError
from lsrl.inputs import check_length, read_tokens
from lsrl.ir.free_weights import Initializer

# options of ``lsrl run`` that say how to compile a program: a compiled directory has its own
PROGRAM_OPTIONS = {"defines": "-D", "exact": "--exact", "variant": "--variant", "format": "--format", "vocab": "--vocab",
                   "input_range": "--input-range", "integer_inputs": "--integer-inputs"}
# what a transformers config.json (``--to``) calls the sizes, per target
SIZE_ALIASES = {"mamba": {"hidden_size": "d_model", "num_hidden_layers": "n_layer", "state_size": "d_state",
                          "time_step_rank": "dt_rank", "intermediate_size": "d_inner"}}


def run_model(args: argparse.Namespace, default_dtype: Any) -> list[list[float]]:
    """The outputs of the model in ``args.program`` (a directory) on ``args.input``, one row per step,
    in ``args.dtype`` or the dtype ``default_dtype(compiled)`` picks."""
    from lsrl.targets import run_compiled

    given = [flag for name, flag in PROGRAM_OPTIONS.items() if getattr(args, name, None)]
    if given or args.backend != "interp":
        flags = given + (["--backend"] if args.backend != "interp" else [])
        raise UsageError(f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} to programs; "
                         f"{args.program} is a compiled model directory, which runs as it was compiled")
    compiled = Compiled.read(args.program)
    tokens = read_tokens(args.input)
    check_length(tokens, compiled.config["d_in"], compiled.config["input_labels"][0]["name"])
    max_len = args.max_len or compiled.config.get("max_len")
    if max_len is not None and len(tokens) > max_len:
        raise UsageError(f"{len(tokens)} steps: the model in {args.program} was built for at most {max_len}")
    outputs = run_compiled(compiled, [[float(v) for v in token] for token in tokens], args.dtype or default_dtype(compiled))
    return [[float(v) for v in step] for step in outputs[0]]


def grow_directory(args: argparse.Namespace) -> None:
    compiled = Compiled.read(args.directory)
    names = size_names(compiled.target)
    sizes = _sizes_of_config(args.to, compiled) if args.to else {}
    if args.width is not None:
        sizes[names[0]] = args.width
    if args.layers is not None:
        sizes[names[-1]] = args.layers
    if not sizes:
        raise UsageError("nothing to grow: give --width, --layers or --to")
    before = current_sizes(compiled)
    if args.at is not None and sizes.get(names[-1], before[names[-1]]) <= before[names[-1]]:
        raise UsageError(f"--at places new layers: give --layers, or a larger {names[-1]} in --to")
    grown = grow_compiled(compiled, sizes, Initializer.parse(args.init), args.seed, args.at)
    try:
        written = grown.write(args.outdir)
    except OSError as e:
        raise UsageError(f"cannot write {args.outdir}: {e.strerror or e}") from None
    after, probe = current_sizes(grown), grown.config["growth"][-1]["probe_max_difference"]
    changes = ", ".join(f"{k} {before[k]} -> {after[k]}" for k in names + setting_names(compiled.target)
                        if before[k] != after[k]) or "unchanged"
    print(f"{args.outdir}: wrote {', '.join(written)} ({compiled.target}: {changes})")
    print("largest output difference from the original on random inputs: "
          + ", ".join(f"{dtype} {value:.3g}" for dtype, value in probe.items()))


def _sizes_of_config(path: str, compiled: Compiled) -> dict[str, int]:
    """The sizes a target configuration names (the target's own names, a transformers config's, and
    ``expand``, which sets ``d_inner`` to ``expand * d_model``)."""
    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} should hold a JSON object of sizes")
    aliases = SIZE_ALIASES.get(compiled.target, {})
    names = size_names(compiled.target) + setting_names(compiled.target)
    other_blocks = set(data.get("block_types", ())) - set(compiled.config.get("block_types", ()))
    if "block_types" in compiled.config and other_blocks:
        raise UsageError(f"{path} asks for {', '.join(sorted(other_blocks))} blocks, which a {compiled.target} model "
                         f"does not have (its blocks: {', '.join(compiled.config['block_types'])}); growth adds none")
    sizes = {aliases.get(k, k): v for k, v in data.items() if aliases.get(k, k) in names}
    if "expand" in data and "d_inner" in names and "d_inner" not in sizes:
        sizes["d_inner"] = data["expand"] * sizes.get("d_model", current_sizes(compiled)["d_model"])
    if not sizes:
        raise UsageError(f"{path} names none of the {compiled.target} target's sizes ({', '.join(names)})")
    bad = [k for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1]
    if bad:
        raise UsageError(f"{path}: {', '.join(bad)} should be whole numbers of at least 1")
    return sizes

