"""The diagonal targets on every program of the test table: size, error and the transformers check.

    python3 benchmarks/diagonal_targets.py [--target mamba|hawk] [--max-len 1024] [--only NAME ...] [--no-reference]

For each row of the shared table (``lsrl/corpus``) and the ``mamba`` target (or ``hawk``: its
blocks are (recurrent block, MLP block) pairs, ``d_inner`` is its ``lru_width``, and the reference
is transformers' ``RecurrentGemmaRecurrentBlock`` and ``RecurrentGemmaMlp``): mixer blocks,
``d_model``, ``d_inner``, recurrent state (one number per channel and block; the convolutions
keep 3 more per channel), parameters, and per dtype the stated error bound (``error_bound``: the
approximations and the rounding, propagated with the range analysis) and the largest absolute
error of the outputs against the exact interpreter over the row's runs (``-`` in float32 where the compiler warned that the program's constants need more
than float32), and the largest difference between each of our mixer blocks and transformers'
``MambaMixer`` (its CPU code path) loaded with the same weights, fed the same hidden states, in
float32 (``ref f32``). hawk's weights depend on the dtype: it is compiled for each, the sizes are the
float32 model's and ``params f64`` the float64 model's parameters. Prints a Markdown table
(docs/target-mamba-hawk.md quotes it).
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from lsrl.backends.hawk import TARGETS as HAWK_TARGETS
from lsrl.backends.hawk import HawkStack
from lsrl.backends.mamba import TARGETS, MambaStack
from lsrl.backends.target import DTYPES
from lsrl.ir.interpret import NotExactError, run

from lsrl.corpus import CASES
from lsrl.targets import compile_to

ROOT = Path(__file__).resolve().parent.parent

MAMBA = TARGETS["mamba"]
HAWK = HAWK_TARGETS["hawk"]


def hawk_reference_difference(compiled, inputs: np.ndarray) -> float:
    """The largest |ours - transformers'| over every recurrent and MLP block, in float32."""
    import transformers
    from transformers.models.recurrent_gemma import (
        modeling_recurrent_gemma as reference,
    )

    config = compiled.config
    reference_config = transformers.RecurrentGemmaConfig(
        hidden_size=config["hidden_size"], lru_width=config["lru_width"], intermediate_size=config["intermediate_size"],
        num_attention_heads=config["num_attention_heads"], conv1d_width=config["conv1d_width"],
        hidden_activation=config["hidden_activation"], num_hidden_layers=config["num_hidden_layers"], block_types=["recurrent"],
    )
    stack = HawkStack.from_compiled(config, compiled.tensors, torch.float32)
    hidden = torch.nn.functional.pad(torch.as_tensor(inputs, dtype=torch.float32), (0, config["hidden_size"] - config["d_in"]))
    positions = torch.arange(hidden.shape[1])[None].expand(hidden.shape[0], -1)
    worst = 0.0
    torch.set_flush_denormal(True)
    with torch.no_grad():
        for i, layer in enumerate(stack.layers):
            block = reference.RecurrentGemmaRecurrentBlock(reference_config, layer_idx=i).eval()
            mlp = reference.RecurrentGemmaMlp(reference_config).eval()
            block.load_state_dict(layer["temporal_block"].state_dict())
            mlp.load_state_dict(layer["mlp_block"].state_dict())
            ours = layer["temporal_block"](hidden)
            worst = max(worst, (ours - block(hidden, positions, None, use_cache=False)[0]).abs().max().item())
            hidden = layer["mlp_block"](ours)
            worst = max(worst, (hidden - mlp(ours)).abs().max().item())
    torch.set_flush_denormal(False)
    return worst


def reference_difference(compiled, inputs: np.ndarray) -> float:
    """The largest |ours - transformers'| over every block, in float32, on the model's own hidden states."""
    import transformers
    from transformers.models.mamba.modeling_mamba import MambaMixer

    config = compiled.config
    reference_config = transformers.MambaConfig(
        hidden_size=config["d_model"], state_size=config["d_state"], expand=config["expand"],
        conv_kernel=config["d_conv"], time_step_rank=config["dt_rank"], use_bias=True, use_conv_bias=True,
        hidden_act="silu", num_hidden_layers=config["n_layer"],
    )
    stack = MambaStack.from_compiled(config, compiled.tensors, torch.float32)
    hidden = torch.nn.functional.pad(torch.as_tensor(inputs, dtype=torch.float32), (0, config["d_model"] - config["d_in"]))
    worst = 0.0
    torch.set_flush_denormal(True)
    with torch.no_grad():
        for i, layer in enumerate(stack.layers):
            reference = MambaMixer(reference_config, layer_idx=i).eval()
            prefix = f"layers.{i}.mixer."
            reference.load_state_dict(
                {k[len(prefix):]: torch.as_tensor(v, dtype=torch.float32) for k, v in compiled.tensors.items() if k.startswith(prefix)}
            )
            ours = layer["mixer"](hidden)
            worst = max(worst, (ours - reference(hidden)).abs().max().item())
            hidden = ours
    torch.set_flush_denormal(False)
    return worst


def expected(case, inputs: list[list[Fraction]]) -> np.ndarray:
    try:
        return run(case.graph(), inputs, exact=True)[0].astype(float)
    except NotExactError:
        return run(case.graph(), [[float(v) for v in t] for t in inputs])[0]


def measure(case, max_len: int, with_reference: bool, target: str = "mamba") -> dict:
    TARGET = HAWK if target == "hawk" else MAMBA
    built, seconds = {}, {}
    for dtype in DTYPES if TARGET.dtype_specific else ("float32",):
        start = time.perf_counter()
        options = case.options(max_len=max_len, dtype=dtype)
        built[dtype] = compile_to(case.graph(), target, options)
        seconds[dtype] = time.perf_counter() - start
    compiled = {dtype: built.get(dtype, built["float32"]) for dtype in DTYPES}  # the model each dtype runs
    errors = {"float64": 0.0, "float32": 0.0}
    reference = 0.0
    for r in case.runs:
        inputs = [[Fraction(str(v)) for v in t] for t in r.inputs]
        want = expected(case, inputs)
        floats = np.array([[[float(v) for v in t] for t in inputs]])
        for dtype in errors:
            errors[dtype] = max(errors[dtype], float(np.max(np.abs(TARGET.run(compiled[dtype], floats, dtype)[0] - want))))
        if with_reference:
            difference = hawk_reference_difference if target == "hawk" else reference_difference
            reference = max(reference, difference(compiled["float32"], floats))
    f = compiled["float32"].figures
    sizes = {
        "program": case.name, "blocks": f["blocks"], "d_model": f["d_model"], "d_inner": f.get("d_inner", f.get("lru_width")),
        "state": f["state_size"], "params": f["parameters"],
    }
    if TARGET.dtype_specific:
        sizes["params f64"] = compiled["float64"].figures["parameters"]
    return {
        **sizes,
        "verdict f32": compiled["float32"].config["precision"]["float32"],
        "bound f32": TARGET.error_bound(compiled["float32"], "float32"), "f32": errors["float32"],
        "verdict f64": compiled["float64"].config["precision"]["float64"],
        "bound f64": TARGET.error_bound(compiled["float64"], "float64"), "f64": errors["float64"],
        "ref f32": reference if with_reference else None, "compile s": seconds["float32"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["mamba", "hawk"], default="mamba")
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--only", nargs="*", help="row names (default: every row)")
    parser.add_argument("--no-reference", action="store_true", help="skip the transformers cross-check")
    args = parser.parse_args()
    rows = [measure(c, args.max_len, not args.no_reference, args.target) for c in CASES if not args.only or c.name in args.only]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for key in columns:
            value = row[key]
            if value is None:
                cells.append("-")
            elif isinstance(value, float):
                cells.append(f"{value:.2f}" if key == "compile s" else f"{value:.2g}")
            else:
                cells.append(str(value))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
