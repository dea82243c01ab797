"""The ``mlir`` target: the layered model as an MLIR module, compiled by IREE for the CPU (see
docs/target-mlir.md).

``lsrl compile --target mlir`` writes ``model.mlir`` (the module, built with the upstream MLIR
Python bindings in ``backends/mlir_module.py`` and verified), ``model.vmfb`` (what IREE compiles
from that text for ``llvm-cpu``, for the CPU it runs on) and ``model.py``, a small runner that
loads the vmfb with ``iree.runtime`` and imports nothing of lsrl. The module is typed: it computes
in the dtype it was compiled for (``--dtype``, config ``"dtype"``). The weights do not depend on
the dtype, so ``Target.run`` in the other dtype builds and compiles that dtype's module from the
config and the weights (once per process).

IREE (``iree-base-compiler``, ``iree-base-runtime``: the ``mlir`` extra) is imported only when
this target builds or runs a model; without it the target says how to install it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from lsrl.backends import codegen
from lsrl.backends.mlir_module import ELEMENT_TYPES, build_module, module_text
from lsrl.backends.mlir_spec import ModelSpec, code_attributes
from lsrl.backends.target import Compiled, Options, Target
from lsrl.ir.errors import LsrlError
from lsrl.ir.layered import LayeredModel

# What IREE is asked for: code for this machine's CPU; float64 kept (IREE turns it into float32
# unless told not to); constants neither evaluated by a JIT nor copied into each kernel at compile
# time, which halves the compile time of a model with many small layers (their kernels then
# differ only by shape, and IREE compiles each shape once) and runs no slower.
TARGET_BACKEND = "llvm-cpu"
COMPILE_FLAGS = (
    "--iree-llvmcpu-target-cpu=host",
    "--iree-input-demote-f64-to-f32=false",
    "--iree-opt-const-eval=false",
    "--iree-flow-inline-constants-max-byte-length=0",
)
INSTALL_HINT = "the mlir target needs IREE: pip install 'lsrl[mlir]' (iree-base-compiler and iree-base-runtime)"

RUNNER = '''"""A program compiled by lsrl for IREE (target mlir): a recurrent model, one token per step.

{summary}

Usage, from this directory (needs numpy and iree-base-runtime, nothing of lsrl):

    import model
    net = model.load(".")                  # model.vmfb, computing in {dtype}
    y = net.forward(x)                     # x: [batch, time, {d_in}] -> y: [batch, time, {d_out}]
    state = net.init_state(batch)          # or token by token, the same outputs:
    y_t, state = net.step(x_t, state)      # x_t: [batch, {d_in}] -> y_t: [batch, {d_out}]

or from the shell: python3 model.py '[[1], [0], [1]]' (one sequence of tokens, prints the outputs).
model.vmfb was compiled by IREE for this machine's CPU from model.mlir; the functions forward,
step and init_state are the module's. This file is generated: edit the program and compile it
again (lsrl compile PROGRAM --target mlir -o DIR).
"""

import json
import sys
from pathlib import Path

import numpy as np
import iree.runtime

D_IN = {d_in}
D_OUT = {d_out}
DTYPE = "{dtype}"
STATE_WIDTHS = {state_widths}  # one [batch, width] array per state, gated or delta layer (its heads' states)
CHUNK_STEPS = 8192  # steps of the sequences forward passes to the module in one call


class Model:
    """The compiled functions of a vmfb, on numpy arrays. driver: "local-task" (a thread pool) or
    "local-sync" (the calling thread only)."""

    def __init__(self, vmfb, dtype=DTYPE, driver="local-task"):
        self.dtype = np.dtype(dtype)
        config = iree.runtime.Config(driver)
        self.context = iree.runtime.SystemContext(config=config)
        self.context.add_vm_module(iree.runtime.VmModule.copy_buffer(self.context.instance, vmfb))
        self.functions = self.context.modules.module

    def forward(self, x):
        """[batch, time, D_IN] -> [batch, time, D_OUT]: every layer over the whole sequences, for a
        few sequences at a time (CHUNK_STEPS steps in all, or one sequence): small arrays stay in
        the cache, which makes large batches of long sequences several times faster."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if x.shape[1] == 0:
            return np.zeros((x.shape[0], 0, D_OUT), dtype=self.dtype)
        per_call = max(1, CHUNK_STEPS // x.shape[1])
        chunks = [_results(self.functions["forward"](x[i:i + per_call]))[0] for i in range(0, len(x), per_call)]
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def init_state(self, batch=1):
        """The state before the first token: one [batch, width] array per state, gated or delta layer."""
        return _results(self.functions["init_state"](batch)) if STATE_WIDTHS else []

    def step(self, x, state):
        """One token: x [batch, D_IN] and the state after the previous token -> (y [batch, D_OUT], new state)."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y, *new_state = _results(self.functions["step"](x, *(np.asarray(s, dtype=self.dtype) for s in state)))
        return y, new_state


def _results(results):
    """numpy copies of a function's results (IREE reuses the memory it returns views of)."""
    results = results if isinstance(results, (tuple, list)) else [results]
    return [np.array(result.to_host()) for result in results]


def load(directory=".", driver="local-task"):
    """The model of DIRECTORY/model.vmfb."""
    return Model((Path(directory) / "model.vmfb").read_bytes(), DTYPE, driver)


if __name__ == "__main__":
    tokens = json.loads(sys.argv[1])
    outputs = load(Path(__file__).parent).forward(np.array([tokens], dtype=float).reshape(1, len(tokens), D_IN))
    for row in outputs[0]:
        print(" ".join(repr(float(v)) for v in row))
'''


def iree_compiler():
    """``iree.compiler``, or an error that says how to install it."""
    try:
        import iree.compiler
        import iree.compiler.version
    except ImportError:
        raise LsrlError(INSTALL_HINT) from None
    return iree.compiler


def module_source(spec: ModelSpec, dtype: str) -> str:
    """``model.mlir``: a comment saying what the module is, then the verified module's text."""
    iree_compiler()
    d_out = spec.layers[-1][1]
    element = ELEMENT_TYPES[dtype]
    header = [
        f"A program compiled by lsrl (target mlir), in {dtype}: the layered model, layer by layer.",
        f"forward(x: tensor<?x?x{spec.d_in}x{element}>) -> tensor<?x?x{d_out}x{element}>: batches of whole sequences;",
        f"step(x: tensor<?x{spec.d_in}x{element}>, state...) -> (y, state...) and init_state(batch) -> state: one token at a time.",
        *(f"layer {i}: {kind}, {codegen.plural(width, 'unit')}{_stages(spec, i)}" for i, (kind, width) in enumerate(spec.layers)),
        "The weights are the dense_resource blobs at the end (layers.{i}.{W,b,...} as in model.safetensors;",
        "a suffix .part{k} for the rows of one stage of a state layer). Generated: edit the program instead.",
    ]
    return "".join(f"// {line}\n" for line in header) + module_text(build_module(spec, dtype))


def _stages(spec: ModelSpec, i: int) -> str:
    stages = spec.plans.get(i)
    if not stages:
        return ""
    return "; " + "; ".join(f"part{k}: {codegen.plural_units(s.units)}, {s.method}" for k, s in enumerate(stages))


_VMFB: dict[str, bytes] = {}  # compiled modules of this process, by the sha256 of their text


def compile_vmfb(source: str) -> bytes:
    """The vmfb IREE compiles from ``source`` for this CPU (once per text per process)."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    if digest not in _VMFB:
        _VMFB[digest] = iree_compiler().compile_str(source, target_backends=[TARGET_BACKEND], extra_args=list(COMPILE_FLAGS))
    return _VMFB[digest]


def runner_source(spec: ModelSpec, dtype: str, summary: str) -> str:
    state_widths = [spec.state_width(i) for i in spec.state_layers]
    return RUNNER.format(summary=summary, dtype=dtype, d_in=spec.d_in, d_out=spec.layers[-1][1], state_widths=state_widths)


_LOADED: dict[tuple[str, str, str], Any] = {}  # (sha256 of the runner and of the vmfb, dtype) -> its Model


def runner(compiled: Compiled, dtype: str = "float32"):
    """The generated runner's ``Model`` of ``compiled`` computing in ``dtype``: ``model.vmfb``, or
    for the other dtype the module of the same weights, compiled now (each once per process)."""
    try:
        import iree.runtime  # noqa: F401
    except ImportError:
        raise LsrlError(INSTALL_HINT) from None
    if dtype == compiled.config["dtype"]:
        vmfb = compiled.files["model.vmfb"]
    else:
        vmfb = compile_vmfb(module_source(ModelSpec.of_config(compiled.config, compiled.tensors), dtype))
    source = compiled.files["model.py"]
    key = (hashlib.sha256(source.encode()).hexdigest(), hashlib.sha256(vmfb).hexdigest(), dtype)
    if key not in _LOADED:
        _LOADED[key] = codegen.import_generated(source).Model(vmfb, dtype)
    return _LOADED[key]


class MlirTarget(Target):
    name = "mlir"
    description = "an MLIR module (linalg on tensors, scf) compiled by IREE for the CPU: model.mlir, model.vmfb, model.py"
    native_gates = True
    layer_kinds = (*Target.layer_kinds, "map", "gated", "delta", "solve")

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        config = codegen.code_config(self, model, options)
        config["code_attributes"] = {str(i): attrs for i, attrs in code_attributes(model).items()}
        tensors = model.tensors()
        spec = ModelSpec.of_config(config, tensors)
        source = module_source(spec, options.dtype)
        config["iree"] = {"version": iree_compiler().version.VERSION, "target_backend": TARGET_BACKEND,
                          "flags": list(COMPILE_FLAGS)}
        files = {
            "model.mlir": source,
            "model.vmfb": compile_vmfb(source),
            "model.py": runner_source(spec, options.dtype, "\n".join(codegen.model_summary(model, options.plan))),
        }
        return Compiled(self.name, config, tensors, files, figures=codegen.figures(model, options.plan))

    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        return runner(compiled, dtype).forward(inputs).astype(np.float64)


TARGETS = {"mlir": MlirTarget()}
