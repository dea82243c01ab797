"""The command line (docs/cli.md), in-process: every example runs with its expected outputs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from lsrl.cli import main
from lsrl.corpus import CASES, Case, Run, as_fraction

ROOT = Path(__file__).resolve().parent.parent
SOURCE_CASES = [c for c in CASES if c.source]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def defines(case: Case) -> list[str]:
    """The row's params as -D options (a vector as comma-separated numbers)."""
    out = []
    for name, value in case.params.items():
        text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        out += ["-D", f"{name}={text}"]
    return out


def token_text(r: Run) -> str:
    return " ".join(",".join(str(as_fraction(v)) for v in token) for token in r.inputs)


def assert_expected(rows: list[list[str]], r: Run) -> None:
    assert len(rows) == len(r.expected)
    for t, want in enumerate(r.expected):
        if want is not None:
            assert [Fraction(v) for v in rows[t]] == [as_fraction(w) for w in want], f"step {t}"


@pytest.mark.parametrize("backend", ["interp", "layers"])
@pytest.mark.parametrize("case", SOURCE_CASES, ids=lambda c: c.name)
def test_example_runs_exactly_from_the_command_line(case: Case, backend: str, tmp_path: Path) -> None:
    """The first run as --input text, the others as @FILE.json with numbers as exact strings."""
    program = str(case.source_path)
    first, *others = case.runs
    run = ("run", program, *defines(case), "--backend", backend)
    status, out, err = run_cli(*run, "--input", token_text(first), "--exact", "--json")
    assert (status, err) == (0, "")
    assert_expected(json.loads(out)["outputs"], first)
    for i, r in enumerate(others):
        data = tmp_path / f"run{i}.json"
        data.write_text(json.dumps([[str(as_fraction(v)) for v in token] for token in r.inputs]))
        status, out, err = run_cli(*run, "--input", f"@{data}", "--exact", "--json")
        assert (status, err) == (0, "")
        assert_expected(json.loads(out)["outputs"], r)


def test_plain_output_is_one_line_per_step() -> None:
    program = str(ROOT / "examples" / "frac_prevs.lsrl")
    status, out, _ = run_cli("run", program, "--input", "8 5 12 12 15", "--exact")
    assert (status, out) == (0, "0\n0\n1/3\n1/2\n2/5\n")
    status, out, _ = run_cli("run", program, "--input", "8 5 12 12 15")
    assert status == 0 and [float(v) for v in out.split()] == pytest.approx([0, 0, 1 / 3, 1 / 2, 2 / 5])
    status, out, _ = run_cli("run", str(ROOT / "examples" / "dyck1.lsrl"), "--input", "1 -1 -1", "--exact")
    assert out == "1 0\n0 1\n-1 0\n"


def test_json_numbers_and_float_mode(tmp_path: Path) -> None:
    data = tmp_path / "tokens.json"
    data.write_text('[3, "1/2", [0.25], -2]')
    program = str(ROOT / "examples" / "shift_register.lsrl")
    status, out, _ = run_cli("run", program, "-D", "length=2", "--input", f"@{data}", "--json")
    assert status == 0 and json.loads(out) == {"outputs": [[3.0, 0.0], [0.5, 3.0], [0.25, 0.5], [-2.0, 0.25]]}
    status, out, _ = run_cli("run", program, "-D", "length=2", "--input", f"@{data}", "--json", "--exact")
    assert json.loads(out) == {"outputs": [["3", "0"], ["1/2", "3"], ["1/4", "1/2"], ["-2", "1/4"]]}


def test_check_stats_and_ir() -> None:
    program = str(ROOT / "examples" / "more_ones.lsrl")
    status, out, _ = run_cli("check", program)
    assert status == 0 and out == f"{program}: ok, 6 nodes, 2 state units, input length 1, output length 1\n"
    status, out, _ = run_cli("stats", program, "--json")
    figures = json.loads(out)
    # the layered model: a state layer (ones, zeros), the two ReLUs of the step, the readout
    layered = {"nodes": 6, "declared_state_dims": 2, "layers": 3, "state_dims": 2, "max_width": 2}
    assert status == 0 and {k: figures[k] for k in layered} == layered
    assert {"dense_params", "nonzeros"} <= figures.keys()
    assert figures["compile_seconds"] >= 0
    status, out, _ = run_cli("stats", program)
    assert status == 0 and out.splitlines()[0] == "nodes: 6"
    status, out, _ = run_cli("ir", program)
    assert status == 0 and out.startswith("graph {") and 'name "ones"' in out
    status, after, _ = run_cli("ir", program, "--after", "dce")
    assert status == 0 and after.count("\n") < out.count("\n")
    status, layers, _ = run_cli("ir", program, "--after", "linearize")
    assert status == 0 and layers.startswith("layered model:") and "ones[0]" in layers


def test_params_reach_the_program() -> None:
    """The defaults and -D overrides build the graphs of the Python twin with the same params."""
    from lsrl.corpus.cases_lsrl import tok2tok

    program = str(ROOT / "examples" / "tok2tok.lsrl")
    _, three, _ = run_cli("stats", program, "--json")
    _, two, _ = run_cli("stats", program, "--json", "-D", "seq_len=2", "-D", "conditional=relu")
    assert json.loads(three)["nodes"] == len(tok2tok(3, "mul"))
    assert json.loads(two)["nodes"] == len(tok2tok(2, "relu")) != len(tok2tok(3, "mul"))


@pytest.mark.parametrize("command", [[], ["check"], ["run"], ["compile"], ["stats"], ["ir"]])
def test_help_explains_with_an_example(command: list[str]) -> None:
    status, out, _ = run_cli(*command, "--help")
    assert status == 0 and "example" in out and "lsrl " in out.split("example")[1]


def test_the_console_script_is_the_cli_entry() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["lsrl"] == "lsrl.cli:main"
    result = subprocess.run([sys.executable, "-m", "lsrl", "check", "examples/dyck1.lsrl"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("examples/dyck1.lsrl: ok")
    result = subprocess.run([sys.executable, "-m", "lsrl", "check", "examples/nothing.lsrl"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr == "lsrl: error: cannot read examples/nothing.lsrl: No such file or directory\n"


def test_input_range_reaches_linearize_and_guards_the_layers_backend() -> None:
    program = str(ROOT / "examples" / "continuous_ua.lsrl")  # its input declares no tokens
    _, unbounded, _ = run_cli("stats", program, "--json")
    _, bounded, _ = run_cli("stats", program, "--json", "--input-range", "0,")
    # non-negative inputs need no negative half when carried through ReLU layers
    assert json.loads(bounded)["dense_params"] < json.loads(unbounded)["dense_params"]
    more_ones = str(ROOT / "examples" / "more_ones.lsrl")
    status, out, _ = run_cli("run", more_ones, "--backend", "layers", "--input-range", "0,1", "--input", "1 0 1 1", "--exact")
    assert (status, out.split()) == (0, ["1", "0", "1", "1"])
    status, _, err = run_cli("run", more_ones, "--backend", "layers", "--input-range", "0,1", "--input", "1 0 2")
    assert status == 1 and err == "lsrl: error: input 2 at step 3 is outside --input-range [0, 1]\n"
    status, _, err = run_cli("stats", more_ones, "--input-range", "2,1")
    assert status == 1 and "empty range" in err


# What the options promise about the inputs, and the message every backend refuses a broken promise with.
MORE_ONES = str(ROOT / "examples" / "more_ones.lsrl")
PROMISES = {
    "input_range": (["--input-range", "0,9", "--input", "1 0 -1"], "input -1 at step 3 is outside --input-range [0, 9]"),
    "tokens": (["--input", "1 0 2"], f"input 2 at step 3 is not one of the input's tokens 0..2 (declared at {MORE_ONES}:3:1)"),
    "integer_inputs": (["--integer-inputs", "--input", "1 2.5"], "input 5/2 at step 2 is not an integer, but --integer-inputs was given"),
    "max_len": (["--max-len", "1", "--input", "1 0"], "--input has 2 tokens, more than --max-len 1"),
}
BACKENDS = [["interp"], ["interp", "--exact"], ["layers"], ["layers", "--exact"], ["torch"], ["rnn"]]


@pytest.mark.parametrize("promise", sorted(PROMISES))
def test_every_backend_refuses_inputs_that_break_a_promise(promise: str) -> None:
    options, message = PROMISES[promise]
    for backend, *exact in BACKENDS:
        assert run_cli("run", MORE_ONES, "--backend", backend, *exact, *options) == (1, "", f"lsrl: error: {message}\n"), backend


def test_only_targets_that_need_a_bound_refuse_long_inputs_by_default() -> None:
    more_ones = str(ROOT / "examples" / "more_ones.lsrl")
    long = " ".join(["1"] * 1100)  # above the default --max-len
    for backend in ("interp", "layers", "torch"):
        status, out, _ = run_cli("run", more_ones, "--backend", backend, "--input", long)
        assert status == 0 and len(out.splitlines()) == 1100
    status, _, err = run_cli("run", more_ones, "--backend", "rnn", "--input", long)
    assert status == 1 and err.startswith("lsrl: error: --input has 1100 tokens, more than the 1024")
    status, out, _ = run_cli("run", more_ones, "--backend", "rnn", "--max-len", "1100", "--input", long)
    assert status == 0 and len(out.splitlines()) == 1100


def test_target_options_are_checked_before_compiling() -> None:
    more_ones = str(ROOT / "examples" / "more_ones.lsrl")
    cases = {
        ("stats", more_ones, "--input", "1 0"): "--input applies to stats with --target",
        ("run", more_ones, "--backend", "torch", "--max-len", "0", "--input", "1"): "argument --max-len: must be at least 1, not 0",
    }
    for argv, message in cases.items():
        status, out, err = run_cli(*argv)
        assert (status, out) == (1, ""), argv
        assert err.startswith("lsrl: error: ") and message in err, err


# --- warnings ----------------------------------------------------------------------------------------------
def warning_messages(err: str) -> list[str]:
    prefix = "lsrl: warning: "
    return [line[len(prefix):] for line in err.splitlines() if line.startswith(prefix)]


def test_run_shows_the_warnings_about_its_dtype_and_compile_shows_all(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import lsrl.targets
    from lsrl.errors import CompileWarning

    compile_to = lsrl.targets.compile_to
    messages = {"float32": "about float32", "float64": "about float64", None: "about every dtype"}

    def with_warnings(*args, **kwargs):
        compiled = compile_to(*args, **kwargs)
        compiled.warnings = [CompileWarning(message, dtype=dtype) for dtype, message in messages.items()]
        return compiled

    monkeypatch.setattr(lsrl.targets, "compile_to", with_warnings)
    more_ones = str(ROOT / "examples" / "more_ones.lsrl")
    for dtype in ("float32", "float64"):
        status, _, err = run_cli("run", more_ones, "--input", "1 0", "--backend", "torch", "--dtype", dtype)
        assert status == 0 and sorted(warning_messages(err)) == sorted([messages[dtype], messages[None]])
    status, _, err = run_cli("compile", more_ones, "--target", "torch", "-o", str(tmp_path))
    assert status == 0 and sorted(warning_messages(err)) == sorted(messages.values())


def test_hawk_in_float64_shows_its_float64_warnings() -> None:
    """The reported case: hawk computes counters only approximately in float64 and must say so."""
    from lsrl.diagnostics import render
    from lsrl.load import compile_file
    from lsrl.targets import compile_to

    counters = str(ROOT / "examples" / "counters.lsrl")
    compiled = compile_to(compile_file(counters), "hawk")
    shown = "".join(render(w) for w in compiled.warnings if w.dtype in (None, "float64"))
    status, _, err = run_cli("run", counters, "--input", "0 0 0", "--backend", "hawk", "--dtype", "float64")
    assert (status, err) == (0, shown)


def test_option_values_may_start_with_a_minus() -> None:
    """`--input-range -1,1` and `--input "-1 0 1"` mean what `--input-range=-1,1` and `--input=...` do."""
    dyck1 = str(ROOT / "examples" / "dyck1.lsrl")
    joined = run_cli("run", dyck1, "--input-range=-1,1", "--input=-1 1 1", "--exact")
    assert joined[0] == 0 and len(joined[1].splitlines()) == 3
    assert run_cli("run", dyck1, "--input-range", "-1,1", "--input", "-1 1 1", "--exact") == joined
    window = str(ROOT / "examples" / "shift_register.lsrl")  # any numbers: dyck1 declares its tokens -1..1
    fractions = run_cli("run", window, "--input", "-1/2 1", "--input-range", "-.5,")
    assert fractions[0] == 0 and fractions == run_cli("run", window, "--input=-1/2 1", "--input-range=-.5,")
    status, _, err = run_cli("run", dyck1, "--input", "1", "--max-len", "-3")
    assert status == 1 and "argument --max-len: must be at least 1, not -3" in err
    # an option's name is never taken for a value
    status, _, err = run_cli("run", dyck1, "--input", "--exact")
    assert status == 1 and "argument --input: expected one argument" in err


# --- what lsrl compile writes ------------------------------------------------------------------------------
def compile_into(directory: Path, target: str) -> list[str]:
    # bits: with the promise, float32 is proven exact and the compiler has nothing to warn about
    status, out, err = run_cli("compile", str(ROOT / "examples" / "more_ones.lsrl"), "--target", target,
                               "--integer-inputs", "--input-range", "0,1", "-o", str(directory))
    assert (status, err) == (0, ""), err
    return sorted(p.name for p in directory.iterdir())


def test_a_recompile_leaves_the_files_of_one_compilation(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the user's")
    assert compile_into(tmp_path, "torch") == ["config.json", "model.py", "model.safetensors", "notes.txt"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert sorted(config["files"]) == ["config.json", "model.py", "model.safetensors"]
    # rnn writes no model.py: the torch one would load the rnn's weights
    assert compile_into(tmp_path, "rnn") == ["config.json", "model.safetensors", "notes.txt"]
    assert sorted(json.loads((tmp_path / "config.json").read_text())["files"]) == ["config.json", "model.safetensors"]
    assert (tmp_path / "notes.txt").read_text() == "the user's"


@pytest.mark.parametrize("config, removed", [
    ({"format": "lsrl.compiled", "target": "lstm", "variant": "relu"}, True),  # an older lsrl: no file list
    ({"format": "lsrl.compiled", "target": "torch", "files": ["model.py"]}, True),  # an older lsrl: the sources
    ({"format": "lsrl.compiled", "target": "rnn", "files": ["config.json", "model.safetensors"]}, False),
    ({"target": "torch", "files": ["model.py"]}, False),  # not an lsrl config: the files are the user's
])
def test_only_files_lsrl_wrote_are_removed(tmp_path: Path, config: dict, removed: bool) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "model.py").write_text("# a model.py\n")
    assert ("model.py" not in compile_into(directory, "rnn")) == removed


def test_a_recorded_file_outside_the_directory_is_never_removed(tmp_path: Path) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    (tmp_path / "outside.txt").write_text("kept")
    (directory / "config.json").write_text(json.dumps({"format": "lsrl.compiled", "files": [str(Path(os.pardir) / "outside.txt"), str(tmp_path / "outside.txt")]}))
    compile_into(directory, "rnn")
    assert (tmp_path / "outside.txt").read_text() == "kept"


def test_every_written_file_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        names = compile_into(tmp_path, "torch")
    finally:
        os.umask(old)
    assert {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in names} == {name: 0o640 for name in names}


@pytest.mark.parametrize("target", [None, "torch", "rnn"])
def test_stats_text_is_for_people(target: str | None) -> None:
    argv = ["stats", str(ROOT / "examples" / "tok2tok.lsrl"), "--input-range", "0,26", "--integer-inputs",
            *(["--target", target] if target else [])]
    status, out, _ = run_cli(*argv, "--json")
    figures = json.loads(out)
    status, out, _ = run_cli(*argv)
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert status == 0 and lines.keys() == figures.keys()
    for key, value in figures.items():
        if value is None:
            assert lines[key] == "-"
        elif isinstance(value, dict):  # "relu 17, state 5, ..."
            assert {kind: int(count) for kind, count in (part.split(" ") for part in lines[key].split(", "))} == value
        elif key != "compile_seconds":  # measured afresh
            assert lines[key] == str(value)


@pytest.mark.parametrize("argv", [
    ["run", "--input", "1", "--backend", "cuda"], ["compile", "--target", "wasm", "-o", "unused"], ["stats", "--target", "tpu"],
])
def test_only_existing_targets_are_offered(argv: list[str]) -> None:
    from lsrl.backends import TARGET_NAMES

    command, *options = argv
    option, name = options[options.index("--backend" if command == "run" else "--target"):][:2]
    status, out, err = run_cli(command, str(ROOT / "examples" / "more_ones.lsrl"), *options)
    assert (status, out) == (1, "")
    assert err.startswith(f"lsrl: error: argument {option}: invalid choice: '{name}'") and err.endswith(f"(see 'lsrl {command} --help')\n")
    _, usage, _ = run_cli(command, "--help")
    assert "cuda" not in usage and "wasm" not in usage and all(target in usage for target in TARGET_NAMES)


@pytest.mark.parametrize("target", ["torch", "rnn"])
def test_config_labels_are_objects_that_point_into_the_program(target: str, tmp_path: Path) -> None:
    compile_into(tmp_path, target)
    config = json.loads((tmp_path / "config.json").read_text())
    source = (ROOT / "examples" / "more_ones.lsrl").read_text().split("\n")

    def written(label: dict) -> str:  # the program text the label's loc points at
        loc = label["loc"]
        assert loc["file"].endswith("more_ones.lsrl")
        return source[loc["line"] - 1][loc["col"] - 1:]

    (x,), (out,) = config["input_labels"], config["output_labels"]
    assert (x["name"], x["index"], x["role"]) == ("x", 0, "value") and written(x).startswith("input x[1]")
    assert written(out).startswith("larger(ones, zeros)")  # the value of `output larger(ones, zeros)`
    units = [unit for layer in config["layers"] for unit in layer["units"]]
    assert {"ones", "zeros"} <= {unit["name"] for unit in units}
    for unit in units:
        assert {"name", "index", "role", "node", "loc"} <= unit.keys() and isinstance(unit["node"], int)
        if unit["name"] in ("ones", "zeros"):
            assert written(unit).startswith(f"state {unit['name']}")
        else:
            assert "larger(" in written(unit)  # the step's ReLUs and readout come from the output's larger()
