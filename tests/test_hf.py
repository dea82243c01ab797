"""``--format hf``: compiled token programs as transformers checkpoints (docs/target-hf.md).

The table below compiles the integer token rows for both targets, writes each checkpoint to a
temporary directory and loads them all in one fresh Python process that has transformers and torch
but cannot import lsrl (``python -I -S`` from a directory outside the repository, with only the
folders of torch and transformers on its path, where the loader checks that ``import lsrl`` fails): there
``from_pretrained(dir, local_files_only=True)`` must give, in float32 and in float64, the exact
interpreter's output token as the argmax at every position, the same argmax token by token with
``use_cache=True``, and a logit margin no smaller than the floor the compiler states.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from lsrl.ir.interpret import run as interpret

import lsrl
from lsrl.cli import main
from lsrl.corpus.token_rows import ROWS, Row

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from lsrl.backends import hf  # noqa: E402  (needs torch)

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("mamba", "hawk")


# what the fresh process runs: every checkpoint in both dtypes, whole sequences and token by token
LOADER = textwrap.dedent('''
    import json, sys
    sys.path += sys.argv[2:]  # the folders of torch and transformers; no .pth file runs (-S), so no editable lsrl
    try:
        import lsrl
        sys.exit("lsrl is importable here")
    except ImportError:
        pass
    import torch, transformers
    torch.set_num_threads(1)  # small models: threads only wait on each other
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    results = {}
    for job in json.load(open(sys.argv[1])):
        cls = getattr(transformers, job["architecture"])
        for dtype in ("float32", "float64"):
            model = cls.from_pretrained(job["dir"], local_files_only=True, dtype=getattr(torch, dtype)).eval()
            whole, margins = [], []
            with torch.no_grad():
                for tokens in job["runs"]:
                    logits = model(torch.tensor([tokens]), use_cache=False).logits[0]
                    top = logits.topk(min(2, logits.shape[-1]), dim=-1).values
                    whole.append(logits.argmax(-1).tolist())
                    margins.append((top[:, 0] - top[:, -1]).min().item())
                steps, cache = [], None
                for t, token in enumerate(job["runs"][0]):
                    kwargs = {"input_ids": torch.tensor([[token]]), "use_cache": True, "cache": cache}
                    if job["architecture"] == "RecurrentGemmaForCausalLM":
                        # all blocks recurrent: the position, and no sliding-window mask to build from the cache
                        kwargs.update(position_ids=torch.tensor([[t]]), attention_mask={"sliding_attention": None})
                    out = model(**kwargs)
                    cache = getattr(out, "cache", None) or cache or transformers.DynamicCache(config=model.config)
                    steps.append(out.logits[0, -1].argmax().item())
            results[job["key"] + "/" + dtype] = {"whole": whole, "steps": steps, "margin": min(margins)}
    print(json.dumps(results))
''')


@pytest.fixture(scope="module", params=TARGETS)
def loaded(request, tmp_path_factory) -> tuple[str, dict, dict]:
    """(target, the fresh process's results, per row key: the compiled model and what it must give)."""
    target = request.param
    directory = tmp_path_factory.mktemp(f"hf_{target}")
    jobs, expected = [], {}
    for row in ROWS:
        graph = row.graph()
        compiled = lsrl.compile_to(graph, target, row.options())
        path = directory / row.key.replace("[", "_").replace("]", "")
        compiled.write(path)
        runs = row.sequences()
        want = [interpret(graph, [[v] for v in r], exact=True)[0][:, 0].astype(int).tolist() for r in runs]
        jobs.append({"key": row.key, "dir": str(path), "architecture": compiled.checkpoint["architectures"][0], "runs": runs})
        expected[row.key] = (compiled, want)
    (directory / "jobs.json").write_text(json.dumps(jobs))
    (directory / "load.py").write_text(LOADER)
    packages = sorted({str(Path(module.__file__).parents[1]) for module in (torch, transformers)})
    done = subprocess.run([sys.executable, "-I", "-S", "load.py", "jobs.json", *packages], cwd=directory,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return target, json.loads(done.stdout), expected


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.key)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_argmax_is_the_program_output_in_a_fresh_process(loaded, row: Row, dtype: str) -> None:
    target, results, expected = loaded
    compiled, want = expected[row.key]
    got = results[f"{row.key}/{dtype}"]
    assert got["whole"] == want
    assert got["steps"] == want[0]  # token by token with the cache, the first sequence
    floor = compiled.config["logit_margin_floor"]
    assert floor is not None and floor > 0 and got["margin"] >= floor
    assert compiled.config["precision"] == {"float32": "exact", "float64": "exact"}


def test_the_stream_norm_is_constant_as_float32_computes_it() -> None:
    """Random stream values whose squares fill the room the construction leaves: RMSNorm (as
    transformers computes it) divides every position by exactly 2^c."""
    from transformers.models.mamba.modeling_mamba import MambaRMSNorm

    width = 37
    exponents = hf.constant_slots(width)
    assert sum(4**i for i in exponents) == width
    room = 2.0**40
    c = hf.norm_exponent(room, width)
    generator = np.random.default_rng(0)
    values = generator.integers(-2**15, 2**15, size=(64, width)).astype(np.float64)
    values[:, -len(exponents):] = [2.0 ** (c + i) for i in exponents]
    values[:, :-len(exponents)] *= np.sqrt(room / (values[:, :-len(exponents)] ** 2).sum(axis=1, keepdims=True)).clip(max=1)
    values[:, :-len(exponents)] = np.floor(values[:, :-len(exponents)])
    norm = MambaRMSNorm(width, eps=hf.MAMBA_EPS)
    with torch.no_grad():
        out = norm(torch.tensor(values, dtype=torch.float32)).double().numpy()
    assert np.array_equal(out, values * 2.0**-c)


def test_hawk_accumulating_tap_is_one_in_float32() -> None:
    tap = hf.accumulate_tap()
    assert tap != 1.0 and np.float32(tap) == 1.0


def _cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def test_command_line_compiles_runs_and_measures_a_checkpoint(tmp_path) -> None:
    more_ones = str(ROOT / "examples" / "more_ones.lsrl")
    status, out, err = _cli("compile", more_ones, "--target", "mamba", "--format", "hf", "-o", str(tmp_path / "m"))
    assert (status, err) == (0, "") and out.endswith("wrote model.safetensors, config.json (target mamba)\n")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architectures"] == ["MambaForCausalLM"] and config["lsrl"]["files"] == ["model.safetensors", "config.json"]
    status, out, err = _cli("run", more_ones, "--backend", "hawk", "--format", "hf", "--input", "1 0 0 1 1", "--json")
    assert (status, err, json.loads(out)) == (0, "", {"outputs": [[1.0], [0.0], [0.0], [0.0], [1.0]]})
    status, out, _ = _cli("stats", more_ones, "--target", "hawk", "--format", "hf", "--input", "1 0 0 1 1", "--json")
    figures = json.loads(out)
    assert figures["config"]["architectures"] == ["RecurrentGemmaForCausalLM"]
    assert figures["max_error_float32"] == figures["max_error_float64"] == 0.0
    assert figures["min_logit_margin_float32"] >= figures["logit_margin_floor"] > 0
    assert figures["checkpoint_bytes"] > 8 * figures["parameters"]


@pytest.mark.parametrize("argv, message", [
    (["examples/counters.lsrl", "--vocab", "30"],
     "examples/counters.lsrl:10:5: error: --format hf needs one token id per step as the output, but the program outputs 6 values per step"),
    (["examples/gates.lsrl"], "examples/gates.lsrl:5:1: error: --format hf needs a token id per step, but the input xy has length 2"),
    (["examples/dyck1.lsrl"], "examples/dyck1.lsrl:4:1: error: --format hf needs token ids from 0, but the input's tokens are -1..2"),
    (["examples/shift_register.lsrl", "-D", "length=1"],
     "lsrl: error: --format hf needs a token program: declare the input's tokens (input x[1] in 0..N) or give --vocab N"),
    (["examples/precision/third_of_eq.lsrl", "--vocab", "4"],
     "examples/precision/third_of_eq.lsrl:3:1: error: --format hf needs the output to be a token id, but output v[0] is not proven to be an integer"),
    (["examples/more_ones.lsrl", "--vocab", "3"], "lsrl: error: --vocab 3 differs from the tokens 0..2 the program's input declares"),
])
def test_programs_that_are_not_token_programs_are_refused_where_they_say_so(argv, message, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    status, out, err = _cli("compile", *argv, "--target", "mamba", "--format", "hf", "-o", str(tmp_path / "out"))
    assert (status, out) == (1, "") and err.startswith(message)


def test_outputs_the_analysis_cannot_keep_in_the_vocabulary_are_warned_at_their_line(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    status, _, err = _cli("compile", "examples/tok2tok.lsrl", "--target", "mamba", "--format", "hf", "--max-len", "256",
                          "-o", str(tmp_path / "out"))
    assert status == 0
    assert err.startswith("examples/tok2tok.lsrl:46:1: warning: output value[0] is not proven to be a token id 0..26: "
                          "the range analysis bounds it by [0, 19968]; where it is not, argmax gives the nearest token id")


def test_other_targets_have_no_hf_format() -> None:
    status, _, err = _cli("compile", str(ROOT / "examples" / "more_ones.lsrl"), "--target", "torch", "--format", "hf", "-o", "x")
    assert status == 1 and err == "lsrl: error: target 'torch' has no --format hf (it writes its own files only)\n"


def test_a_norm_that_cannot_stay_constant_is_warned_at_the_largest_value(tmp_path) -> None:
    program = tmp_path / "huge.lsrl"
    program.write_text("input x[1] in 0..2\ns = accumulate(x * 1e30)\noutput larger(s, 1/2)\n")
    status, _, err = _cli("compile", str(program), "--target", "mamba", "--format", "hf", "-o", str(tmp_path / "hf"))
    assert status == 0 and err.startswith(f"{program}:2:1: warning: --format hf cannot keep the residual stream's norm constant")
    assert "float32 is not proven to compute output" in err
    # the values beyond 2^96 take a silu scale below 1 (it was 0, and a division by zero)
    status, _, err = _cli("compile", str(program), "--target", "mamba", "-o", str(tmp_path / "own"))
    assert status == 0
