"""Forward time of the triton target's generated kernels on a CUDA GPU, against
flash-linear-attention's own kernels and the torch and jax targets' code, at fla's benchmark shapes.

    python3 benchmarks/gpu_kernels.py                       # T in 1024, 4096, 8192, 16384
    python3 benchmarks/gpu_kernels.py --lengths 8192 --layers gla
    python3 benchmarks/gpu_kernels.py --check               # tiny shapes, CPU: the script's own plumbing

It needs a CUDA GPU (and triton, fla-core, jax with CUDA for the jax column); without one it says
so and exits (``--check`` runs tiny shapes through Triton's interpreter on the CPU instead, to test
this script, not to time anything). Batch 1, 16 heads, dk = dv = 128, float32, each head reading
``q_t^T S_t``; the layer's input term is given (the same matrix product everywhere):

- ``gla``: a decay per key, ``exp(gk)`` with ``gk = logsigmoid(.) / 16``;
- ``simple_gla``: one decay per head and step;
- ``deltanet``: the delta rule, unit keys, beta in (0, 1).

Columns: the generated kernel alone (``kernels.py``'s launcher on contiguous operands) and the
generated ``model.py``'s ``state_heads`` (which gathers the operands from the layer's units), in
the recurrent and the chunked form (chunk 16 for GLA's per-key decays, whose chunk kernel holds a
C x C x dk block, 64 otherwise); fla's ``fused_recurrent_*`` and ``chunk_*``; the torch and jax targets' generated code in
the recurrent and chunk forms. Each figure is the best of ``--repeat`` runs after a warm-up
(CUDA synchronized); the ratios are against fla's faster kernel of the same form.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from typing import Callable

CHECK = "--check" in sys.argv
if CHECK:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when triton is first imported

import torch  # noqa: E402
from lsrl.backends import Options, get_target, head_code  # noqa: E402
from lsrl.backends.codegen import import_generated  # noqa: E402
from lsrl.ir.heads import DeltaHead, MatrixHead, encode  # noqa: E402
from lsrl.ir.layered import Label, Layer, LayeredModel, UnitLabel  # noqa: E402
from lsrl.ir.matrix import Matrix  # noqa: E402
from lsrl.ir.numbers import exact  # noqa: E402
from lsrl.passes.schedule import schedule  # noqa: E402

LAYERS = ("gla", "simple_gla", "deltanet")
CHUNK = {"gla": 16, "simple_gla": 64, "deltanet": 64}


def shapes(check: bool) -> tuple[int, int, int]:
    """(batch, heads, head dim): fla's benchmark shapes, or tiny ones for --check."""
    return (1, 2, 4) if check else (1, 16, 128)


# --- the layer as a layered model, compiled by each target -----------------------------------------------
def head_model(layer: str, heads: int, dim: int) -> LayeredModel:
    """One matrix or delta layer: per head its operands (decays or alpha and beta, key, value,
    query) one after the other, then the heads' reads."""
    decays = {"gla": dim, "simple_gla": 1, "deltanet": 2}[layer]
    block = decays + 3 * dim
    built = []
    for h in range(heads):
        base, out = h * block, heads * block + h * dim
        key = base + decays
        if layer == "deltanet":
            built.append(DeltaHead(base, base + 1, key, dim, key + dim, dim, key + 2 * dim, out))
        else:
            built.append(MatrixHead(base, decays, key, dim, key + dim, dim, key + 2 * dim, out))
    width = heads * (block + dim)
    units = tuple(UnitLabel(Label("u", i)) for i in range(width))
    kind = "delta" if layer == "deltanet" else "matrix"
    one = Layer(kind, {"W": Matrix(width, 1), "b": (exact(0),) * width, "heads": encode(built)}, units)
    return LayeredModel(1, [one], [Label("x", 0)], [Label("u", i) for i in range(width)])


def generated(model: LayeredModel, target: str, form: str, chunk: int):
    """The target's generated model.py (beside its kernels.py for triton) in ``form``, as a module."""
    built = get_target(target).build(model, replace(Options(), plan=schedule(model, form, chunk)))
    return import_generated(built.files["model.py"], {k: v for k, v in built.files.items() if k != "model.py"})


# --- inputs -----------------------------------------------------------------------------------------------
def operands(layer: str, batch: int, length: int, heads: int, dim: int, device: str) -> dict[str, torch.Tensor]:
    """fla's layout [batch, time, heads, dim], float32: q, k, v and the decays (gk, g) or beta."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def normal(*shape):
        return torch.randn(*shape, generator=g).to(device)

    q, k, v = (normal(batch, length, heads, dim) / 8 for _ in range(3))
    if layer == "gla":
        return {"q": q, "k": k, "v": v, "gk": torch.nn.functional.logsigmoid(normal(batch, length, heads, dim)) / 16}
    if layer == "simple_gla":
        return {"q": q, "k": k, "v": v, "g": torch.nn.functional.logsigmoid(normal(batch, length, heads)) / 16}
    k = k / k.norm(dim=-1, keepdim=True)
    return {"q": q, "k": k, "v": v, "beta": torch.rand(batch, length, heads, generator=g).to(device)}


def head_parts(layer: str, x: dict[str, torch.Tensor]) -> tuple[str, list[torch.Tensor]]:
    """The heads' operands as the generated code takes them (decays, not log-decays)."""
    if layer == "gla":
        return "matrix", [x["gk"].exp(), x["k"], x["v"]]
    if layer == "simple_gla":
        return "matrix", [x["g"].exp()[..., None], x["k"], x["v"]]
    return "delta", [torch.ones_like(x["beta"])[..., None], x["beta"][..., None], x["k"], x["v"]]


def layer_units(parts: list[torch.Tensor], q: torch.Tensor) -> torch.Tensor:
    """u [batch, time, width] in head_model's layout (the reads' units zero)."""
    per_head = torch.cat([*parts, q], dim=-1)
    batch, length, heads, _ = per_head.shape
    return torch.cat([per_head.reshape(batch, length, -1), q.new_zeros(batch, length, heads * q.shape[-1])], dim=-1)


# --- the runs -----------------------------------------------------------------------------------------------
def runs(layer: str, length: int, check: bool, device: str) -> dict[str, Callable[[], object]]:
    batch, heads, dim = shapes(check)
    x = operands(layer, batch, length, heads, dim, device)
    kind, parts = head_parts(layer, x)
    scale = dim ** -0.5
    q = x["q"] * scale
    s0 = q.new_zeros(batch, heads, dim, dim)
    model = head_model(layer, heads, dim)
    groups = head_code.head_groups(model.layers[0])
    u = layer_units(parts, q)
    chunk = CHUNK[layer]
    out: dict[str, Callable[[], object]] = {}
    for form in ("recurrent", "chunk"):
        code = generated(model, "triton", form, chunk)
        if form == "chunk":
            chunked = code.kernels.matrix_heads_chunk if kind == "matrix" else code.kernels.delta_heads_chunk
            out[f"triton kernel {form}"] = lambda chunked=chunked: chunked(parts, q, s0, chunk)
        else:
            out[f"triton kernel {form}"] = lambda code=code: code.kernels.heads_recurrence(kind, parts, q, s0)
        out[f"triton model.py {form}"] = lambda code=code, form=form: code.state_heads(u, kind, groups, None, form, chunk)
        torch_code = generated(model, "torch", form, chunk)
        out[f"torch target {form}"] = lambda code=torch_code, form=form: code.state_heads(u, kind, groups, None, form, chunk)
    if not check:
        out.update(fla_runs(layer, x, scale))
        out.update(jax_runs(model, u, kind, groups, chunk))
    return out


def fla_runs(layer: str, x: dict[str, torch.Tensor], scale: float) -> dict[str, Callable[[], object]]:
    try:
        if layer == "gla":
            from fla.ops.gla import chunk_gla, fused_recurrent_gla

            return {"fla fused_recurrent": lambda: fused_recurrent_gla(x["q"], x["k"], x["v"], gk=x["gk"], scale=scale),
                    "fla chunk": lambda: chunk_gla(x["q"], x["k"], x["v"], g=x["gk"], scale=scale)}
        if layer == "simple_gla":
            from fla.ops.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla

            return {"fla fused_recurrent": lambda: fused_recurrent_simple_gla(x["q"], x["k"], x["v"], g=x["g"], scale=scale),
                    "fla chunk": lambda: chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"], scale=scale)}
        from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule

        return {"fla fused_recurrent": lambda: fused_recurrent_delta_rule(x["q"], x["k"], x["v"], x["beta"], scale=scale),
                "fla chunk": lambda: chunk_delta_rule(x["q"], x["k"], x["v"], x["beta"], scale=scale)}
    except ImportError as e:
        print(f"  (fla's kernels not run: {e})")
        return {}


def jax_runs(model: LayeredModel, u: torch.Tensor, kind: str, groups, chunk: int) -> dict[str, Callable[[], object]]:
    try:
        import jax
    except ImportError:
        print("  (the jax target not run: no jax)")
        return {}
    if jax.default_backend() != "gpu":
        print("  (the jax target not run: jax has no GPU here)")
        return {}
    units = jax.device_put(u.cpu().numpy())
    out = {}
    for form in ("recurrent", "chunk"):
        code = generated(model, "jax", form, chunk)
        call = jax.jit(lambda u, code=code, form=form: code.state_heads(u, kind, groups, None, form, chunk))
        out[f"jax target {form}"] = lambda call=call: call(units)[0].block_until_ready()
    return out


def best_seconds(run: Callable[[], object], repeat: int, device: str) -> float:
    run()
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="1024,4096,8192,16384")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="tiny shapes on the CPU (Triton's interpreter)")
    args = parser.parse_args()
    if not args.check and not torch.cuda.is_available():
        print("benchmarks/gpu_kernels.py needs a CUDA GPU (none here): not run. "
              "--check runs its plumbing on tiny shapes on the CPU.")
        return 0
    device = "cpu" if args.check else "cuda"
    torch.set_default_device(device)
    lengths = [7, 20] if args.check else [int(n) for n in args.lengths.split(",")]
    batch, heads, dim = shapes(args.check)
    print(f"device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu (interpreter)'}; batch {batch}, "
          f"{heads} heads, dk = dv = {dim}, float32; best of {args.repeat} runs, milliseconds")
    for layer in args.layers.split(","):
        for length in lengths:
            print(f"\n{layer}, T = {length}:")
            timings = {name: best_seconds(run, args.repeat, device) for name, run in runs(layer, length, args.check, device).items()}
            for name, seconds in timings.items():
                form = "chunk" if "chunk" in name else "recurrent"
                fla = timings.get("fla chunk" if form == "chunk" else "fla fused_recurrent")
                ratio = f"  {seconds / fla:6.2f}x fla's {form} kernel" if fla else ""
                print(f"  {name:26s} {seconds * 1e3:10.3f} ms{ratio}")
    if args.check:
        check_agreement()
    return 0


def check_agreement() -> None:
    """--check: the triton columns compute what the torch target's code does (float32, tiny shapes)."""
    for layer in LAYERS:
        for form in ("recurrent", "chunk"):
            made = runs(layer, 20, True, "cpu")
            got, want = made[f"triton model.py {form}"]()[0], made[f"torch target {form}"]()[0]
            error = float((got - want).abs().max())
            print(f"check {layer} {form}: triton model.py against the torch target: largest difference {error:.1e}")
            assert error < 1e-5


if __name__ == "__main__":
    sys.exit(main())
