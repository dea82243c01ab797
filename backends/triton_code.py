"""The ``triton`` target: the ``torch`` target's ``model.py`` with its state layers run by
generated Triton kernels (``kernels.py``; see docs/target-triton.md).

``model.py`` is the torch target's file (same ``forward``/``init_state``/``step``, same weight
file) in which the helpers that loop over time call the launchers of ``kernels.py`` instead:
gated and constant diagonal layers, constant matrix transitions and the heads of matrix and delta
layers. The other layers (affine, ReLU, gate, map, solve) and the loop-free stages of constant
state layers (copies, running sums, rotations) stay torch operations, except that a gated layer's
kernel reads its drive and gate itself where they pick and scale columns of the layer's input
(``TritonSyntax``: fused, no tensor of them written). ``kernels.py`` holds the
kernels the model needs (``backends/triton_kernels.py``) under a header that says which state
layer runs which kernel, with the layer's unit labels. Neither file imports lsrl.

The kernels compute the ``recurrent`` form and, for gated layers, diagonal loops and matrix and
delta heads with a query, the ``chunk`` form, and Mesa's chunk form of a solve by
conjugate-gradient steps (``backends/mesa_code.py``). A constant state layer with a matrix loop planned in
the chunk form (no chunked kernel) runs its recurrent kernel, with a warning, and the config's plan
records the form that runs. Without CUDA, ``model.py`` runs the kernels in
Triton's interpreter (``TRITON_INTERPRET=1``) on the CPU.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from lsrl.backends import codegen, head_code, mesa_code, torch_code, triton_kernels
from lsrl.backends.target import Compiled, Options, Target
from lsrl.ir.errors import CompileWarning
from lsrl.ir.heads import STATE_HEADS
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.schedule import (
    AUTO,
    CHUNK,
    MATRIX_LOOP,
    RECURRENT,
    SCALED_LOOP,
    LayerPlan,
    Plan,
    plural,
)

PREAMBLE = '''

def load_kernels():
    """kernels.py from beside this file (by path: no import path needed). Without CUDA, Triton's
    interpreter runs the kernels on the CPU (slowly: for checking, not for speed)."""
    import importlib.util
    import os
    import sys

    if not torch.cuda.is_available():
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("no CUDA device, and triton was imported without its interpreter: set "
                               "TRITON_INTERPRET=1 before importing triton to run the kernels on the CPU")
        os.environ.setdefault("TRITON_INTERPRET", "1")
    spec = importlib.util.spec_from_file_location(f"{__name__}_kernels", Path(__file__).with_name("kernels.py"))
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


kernels = load_kernels()
'''

STATE_HEADS_HELPER = head_code.STATE_HEADS_TORCH + '''
def group_heads(kind, parts, q, s, form="recurrent", size=0):
    """Heads of one shape as one Triton kernel from S = s: kernels.heads_recurrence, or in the
    chunk form kernels.matrix_heads_chunk or kernels.delta_heads_chunk for heads with a query
    (heads that emit their states keep the recurrent kernel: every step's state is written
    anyway). Returns [batch, time, heads, n] and the last S."""
    if form == "chunk" and q is not None:
        return (kernels.matrix_heads_chunk if kind == "matrix" else kernels.delta_heads_chunk)(parts, q, s, size)
    return kernels.heads_recurrence(kind, parts, q, s)
'''

# the torch helpers that kernels replace -> the kernel (entry of triton_kernels.KERNELS) whose launcher it is
BY_KERNEL = {
    "scaled_recurrence": "gated_recurrence", "gated_recurrence": "gated_recurrence", "gated_chunk": "gated_chunk",
    "matrix_recurrence": "matrix_recurrence",
}
HELPERS = {
    **{name: helper for name, helper in torch_code.HELPERS.items()
       if name in ("previous", "delay_lines", "running_sum", "rotation", "heads_layer")},
    **{name: f"{name} = kernels.{name}  # a launcher of kernels.py" for name in BY_KERNEL},
    "state_heads": STATE_HEADS_HELPER,
}


class TritonSyntax(torch_code.TorchSyntax):
    """The torch target's spelling, with gated layers fused: where the drive ``W x + b`` or the
    gate ``W2 x + b2`` picks and scales columns of x (``codegen.gather_of``), the gated kernel
    reads those columns of x and scales and shifts them as it loads them, so that no tensor of the
    drive or gate is written and read back (``operand_reads`` in kernels.py); a matrix product stays a
    torch operation (cuBLAS) whose result the kernel reads."""

    def gated_lines(self, layer: Layer, plan: LayerPlan) -> list[str]:
        operands = [codegen.gather_of(layer, self, weight, bias) for weight, bias in (("W", "b"), ("W2", "b2"))]
        if operands == [None, None]:
            return super().gated_lines(layer, plan)
        drive, gate = (
            codegen.affine_of(layer, self, weight, bias) if gather is None else f"({gather[0]}, {gather[1]}, {gather[2]})"
            for gather, (weight, bias) in zip(operands, (("W", "b"), ("W2", "b2"))))
        launcher = f"gated_chunk({drive}, {gate}, layer.init, {plan.chunk}, x)" if plan.form == CHUNK else \
            f"gated_recurrence({drive}, {gate}, layer.init, x)"
        fused = " and ".join(name for name, gather in zip(("drive", "gate"), operands) if gather is not None)
        return [f"# fused: the kernel reads the {fused} from columns of x (no tensor written for {'them' if ' and ' in fused else 'it'})",
                f"x = {launcher}"]


def kernel_plan(model: LayeredModel, plan: Plan) -> tuple[Plan, list[CompileWarning]]:
    """The plan the kernels compute: a constant state layer with a matrix loop planned in the
    chunk form (no chunked kernel) in the recurrent form, with a warning unless ``auto`` chose its
    form."""
    layers, warnings = [], []
    for layer_plan in plan.layers:
        if layer_plan.form == CHUNK and any(s.method == MATRIX_LOOP for s in layer_plan.stages):
            if plan.requested != AUTO:
                warnings.append(CompileWarning(
                    f"layer {layer_plan.layer} ({layer_plan.kind}) has no chunked Triton kernel: it runs its "
                    f"recurrent kernel (the same numbers; docs/target-triton.md)",
                    node=_matrix_loop_unit(model, layer_plan).node))
            layer_plan = replace(layer_plan, form=RECURRENT, chunk=0)
        layers.append(layer_plan)
    return replace(plan, layers=tuple(layers)), warnings


def _matrix_loop_unit(model: LayeredModel, layer_plan: LayerPlan) -> UnitLabel:
    """The first unit of the layer's matrix loop: its node is the program's state the warning points at."""
    return model.layers[layer_plan.layer].units[next(s for s in layer_plan.stages if s.method == MATRIX_LOOP).units[0]]


def kernels_used(model: LayeredModel, plan: Plan) -> list[str]:
    """The kernels (entries of ``triton_kernels.KERNELS``) that the model's ``model.py`` calls."""
    used = {BY_KERNEL[name] for name in codegen.helpers_used(model, plan) if name in BY_KERNEL}
    if mesa_code.kernel_applies(model, plan):
        used.add("solve_chunk_cg")
    for layer_plan in plan.layers:
        if layer_plan.kind in STATE_HEADS:
            used.add("heads_recurrence")  # step, and heads without a query, in every form
            if layer_plan.form == CHUNK:
                used.add(f"{layer_plan.kind}_heads_chunk")
    return [name for name in triton_kernels.KERNELS if name in used]


def kernels_source(model: LayeredModel, plan: Plan) -> str:
    """The text of ``kernels.py``: which state layer runs which kernel (with its unit labels),
    then the prelude and the kernels it needs."""
    lines = [
        "Triton kernels generated by lsrl for the state layers of a compiled program (target triton);",
        "model.py, beside this file, calls their launchers. Each kernel keeps the layer's state in",
        "registers and runs time in its own loop (docs/target-triton.md). This file is generated:",
        "edit the program and compile it again (lsrl compile PROGRAM --target triton -o DIR).",
        "",
        "State layers:",
    ]
    for layer_plan in plan.layers:
        layer = model.layers[layer_plan.layer]
        lines.append(f"  layer {layer_plan.layer}: {layer.kind}, {plural(layer.width, 'unit')}, "
                     f"{_layer_kernels(layer_plan)}")
        lines.append(f"    {codegen.summarize_labels([str(u) for u in layer.units], 90)}")
    if mesa_code.kernel_applies(model, plan):
        lines.append("  the solve layers after chunked matrix layers: solve_chunk_cg (Mesa's chunk form, "
                     "conjugate-gradient steps)")
    kernels = [triton_kernels.KERNELS[name].strip() for name in kernels_used(model, plan)]
    body = "\n\n\n".join([triton_kernels.PRELUDE.strip(), *kernels])
    return f"{codegen.docstring(chr(10).join(lines))}\n\n{body}\n"


def _layer_kernels(layer_plan: LayerPlan) -> str:
    chunked = layer_plan.form == CHUNK
    if layer_plan.kind == "gated":
        return f"gated_chunk (C = {layer_plan.chunk})" if chunked else "gated_recurrence"
    if layer_plan.kind in STATE_HEADS:
        if chunked:
            return f"{layer_plan.kind}_heads_chunk (C = {layer_plan.chunk}; heads without a query: heads_recurrence)"
        return "heads_recurrence"
    methods = {s.method for s in layer_plan.stages}
    kernels = [f"gated_chunk (C = {layer_plan.chunk})" if chunked else "scaled_recurrence"] if SCALED_LOOP in methods else []
    kernels += ["matrix_recurrence"] if MATRIX_LOOP in methods else []
    return ", ".join(kernels) if kernels else "no kernel (no loop over time: torch operations)"


# the torch helpers of Mesa's chunk form (backends/mesa_code.py): a direct solve is a torch
# operation in this target too; conjugate-gradient steps run the kernel solve_chunk_cg
SOLVE_CHUNK_HELPERS = ("solve_chunk", "head_forms", "chunks", "associative_scan")


def model_source(model: LayeredModel, plan: Plan) -> str:
    """``model.py`` for ``model`` in the forms of ``plan`` (a ``kernel_plan``)."""
    helpers = HELPERS
    if "solve_chunk" in codegen.helpers_used(model, plan):
        helpers = {**HELPERS, **{name: torch_code.HELPERS[name] for name in SOLVE_CHUNK_HELPERS},
                   "solve_chunk": mesa_code.TRITON_HELPER}
    return torch_code.generate_source(model, plan, helpers, "triton", "torch, triton and safetensors", PREAMBLE, TritonSyntax())


class TritonTarget(Target):
    name = "triton"
    description = "the torch target's model.py with its state layers run by generated Triton kernels (kernels.py)"
    native_gates = True
    layer_kinds = torch_code.TorchTarget.layer_kinds
    schedules = (RECURRENT, CHUNK, AUTO)

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        plan, warnings = kernel_plan(model, options.plan) if options.plan is not None else (None, [])
        compiled = codegen.build_code_target(self, model, replace(options, plan=plan), model_source)
        compiled.files["kernels.py"] = kernels_source(model, plan)
        compiled.warnings += warnings
        return compiled

    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        net = torch_code.module(compiled, dtype, device)
        with torch.no_grad():
            return net(torch.from_numpy(np.asarray(inputs, dtype=np.float64)).to(device)).double().cpu().numpy()


TARGETS = {"triton": TritonTarget()}
