"""The ``lsrl`` command line (docs/cli.md).

Every mistake of the user (program, option, input data) ends as a diagnostic on stderr and exit
status 1; ``main`` returns the exit status, so tests can call it in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace
from typing import Callable, Optional, Sequence

from gmpy2 import mpq

from lsrl.backends import TARGET_NAMES, Options, get_target
from lsrl.backends.target import DEFAULT_MAX_LEN
from lsrl.backends.verdict import UNPROVEN
from lsrl.bench.command import add_bench_command
from lsrl.diagnostics import PROGRAM, render
from lsrl.errors import CompileWarning, LsrlError, UsageError
from lsrl.inputs import check_length, read_tokens
from lsrl.ir.free_weights import DEFAULT as DEFAULT_INIT
from lsrl.ir.graph import Graph, input_tokens
from lsrl.ir.interpret import NotExactError
from lsrl.ir.interpret import run as interpret
from lsrl.ir.numbers import exact
from lsrl.ir.schedule import CHUNK, DEFAULT_CHUNK, RECURRENT, SCAN, SCHEDULES
from lsrl.load import compile_file

EXACT_BACKENDS = ["interp", "layers"]
FORMATS = ["hf"]
BACKENDS = EXACT_BACKENDS + list(TARGET_NAMES)

MAIN_EPILOG = """\
examples:
  lsrl check examples/more_ones.lsrl
  lsrl run examples/more_ones.lsrl --input "1 0 0 1 1 1 0" --exact
  lsrl run examples/tok2tok.lsrl -D seq_len=3 --input @examples/data/capitals_prompt.json --json
  lsrl run examples/more_ones.lsrl --input "1 0 0 1" --backend torch --dtype float64
  lsrl run examples/compiled/more_ones_rnn --input "1 0 0 1" --dtype float64
  lsrl compile examples/more_ones.lsrl --target torch -o out/more_ones
  lsrl stats examples/more_ones.lsrl --json
  lsrl ir examples/more_ones.lsrl

The examples run from the root of the lsrl repository (examples/ holds the programs and their data).
Run "lsrl COMMAND --help" for the options of one command; docs/cli.md is the reference."""

CHECK_EPILOG = """\
example:
  lsrl check examples/more_ones.lsrl
prints "examples/more_ones.lsrl: ok, ..." or the first error as FILE:LINE:COL: error: MESSAGE"""

RUN_EPILOG = """\
examples:
  lsrl run examples/more_ones.lsrl --input "1 0 0 1" --exact
  lsrl run examples/continuous_ua.lsrl --input "0.25,0.75,0,0 0.5,0,0,1 0.5,0,0.5,2 0.5,0.5,0,3 0.5,0.5,0.5,4" --json
  lsrl run examples/tok2tok.lsrl -D seq_len=3 --input @examples/data/capitals_prompt.json
  lsrl run examples/parity.lsrl -D max_len=32 --input @examples/data/parity_tokens.json
  lsrl run examples/dyck1.lsrl --input "1 -1 -1" --input-range -1,1 --exact
  lsrl run examples/more_ones.lsrl --input "1 0 0 1" --backend torch --dtype float64
  lsrl run examples/compiled/more_ones_rnn --input "1 0 0 1" --dtype float64

examples/data/capitals_prompt.json is LSRL's 153-token lookup prompt: the query CAN, then every
country code and its capital's (letters A=1..Z=26); the last three outputs spell OTT (15 20 20).

--input: tokens separated by spaces; a token of length > 1 is comma-separated numbers; a number is
an integer, a decimal or a fraction p/q, read exactly. @FILE.json reads a JSON list of tokens (a
token is a number or a list of numbers; write "1/3" as a string to keep it exact).
--input-range, --integer-inputs, --max-len and the input's tokens (input x[1] in 0..N in the program,
or --vocab N) are promises about the inputs: every backend refuses inputs that break them. Compiled
targets print the warnings about the dtype they run in (or about every dtype) on stderr. With
--format hf, a mamba or hawk checkpoint runs through transformers and prints the argmax tokens.
Output: one line per step (its values separated by spaces), or with --json one object
{"outputs": [[...], ...]}. With --exact, values are exact rationals "p/q" (strings in JSON)."""

STATS_EPILOG = """\
examples:
  lsrl stats examples/more_ones.lsrl --json
  lsrl stats examples/more_ones.lsrl --target rnn --input "1 0 0 1 1"
  lsrl stats examples/more_ones.lsrl --target hawk --format hf --input "1 0 0 1 1"
prints the program graph's node count and, for the linearized layered model: layers, state_dims
(state units), max_width (widest layer), dense_params, nonzeros (non-zero weights), the layer kinds,
carried units, and compile_seconds (parse to layered model).
With --target, the compiled target's figures instead (its layers, widths, parameters), and with
--input also the largest error of its outputs on those tokens, in float32 and float64, measured
against the exact interpreter; with --format hf also the checkpoint's size, its transformers config, the
stated logit margin floor and, with --input, the smallest logit margin measured."""

COMPILE_EPILOG = """\
examples:
  lsrl compile examples/more_ones.lsrl --target torch -o out/more_ones
  lsrl compile examples/tok2tok.lsrl -D seq_len=3 --target rnn --input-range 0,30 --integer-inputs -o out/tok2tok
  lsrl compile examples/more_ones.lsrl --target mamba --format hf -o out/more_ones_hf
writes OUTDIR/model.safetensors (float64 weights, named as the target names them), OUTDIR/config.json
(target, layer list, shapes, unit labels, parameters, source hash, the files written) and, for code
targets, OUTDIR/model.py; the files of an earlier compilation into OUTDIR are removed first, other
files stay. Prints every warning, whatever dtype it is about. With --format hf (mamba, hawk; a token
program: input x[1] in 0..N, or --vocab N): a checkpoint that transformers' MambaForCausalLM or
RecurrentGemmaForCausalLM loads with from_pretrained (docs/target-hf.md)."""

IR_EPILOG = """\
examples:
  lsrl ir examples/more_ones.lsrl
  lsrl ir examples/more_ones.lsrl --after dce
  lsrl ir examples/more_ones.lsrl --after linearize
  lsrl ir examples/more_ones.lsrl --emit mlir --dtype float64
  lsrl ir examples/mqar_delta.lsrl --after chunk --chunk 16
print the program graph in the IR's text form, as built or after the graph passes up to PASS;
--after linearize prints the layered model, --after chunk and --after scan its schedule plan in
that form (docs/schedules.md), --emit mlir the layered model as the MLIR module of the mlir
target (its model.mlir; needs IREE's Python bindings, pip install 'lsrl[mlir]')"""


GROW_EPILOG = """\
examples:
  lsrl grow examples/compiled/more_ones_rnn -o build/rnn-wide --width 64 --layers 4 --seed 1
  lsrl grow examples/compiled/more_ones_mamba -o build/mamba-small --to examples/data/mamba_small.json
  lsrl grow examples/compiled/more_ones_hawk -o build/hawk-small --to examples/data/hawk_small.json --at 1
examples/compiled holds what lsrl compile examples/more_ones.lsrl --target rnn (mamba, hawk) -o wrote;
new weights the proof needs are zero, copies or the identity; the others are drawn from --init
(targets rnn, lstm, gru, mamba, hawk, linear-rnn; docs/growth.md); the grown model is checked
against the original on random inputs and the largest difference printed"""


class _ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose mistakes are ordinary usage errors (status 1, "lsrl: error:")."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _define(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    return name.strip(), value


def _parser() -> _ArgumentParser:
    parser = _ArgumentParser(
        prog=PROGRAM,
        description="Compile .lsrl programs (one step of a recurrent model, run once per token) to exact program graphs, and run them.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True, parser_class=_ArgumentParser)

    def command(name: str, help: str, epilog: str, handler: Callable) -> _ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(handler=handler)
        sub.add_argument("program", metavar="PROGRAM.lsrl", help="the program to compile")
        sub.add_argument("-D", dest="defines", metavar="NAME=VALUE", type=_define, action="append", default=[],
                         help="set a param of the program (repeatable)")
        return sub

    command("check", "check a program: parse, elaborate and verify its graph", CHECK_EPILOG, _check)

    run = command("run", "run a program over a sequence of input tokens", RUN_EPILOG, _run)
    run.add_argument("--input", required=True, metavar="TOKENS", help='the tokens, e.g. "1 0 1" or "0.5,1 2,3", or @FILE.json')
    run.add_argument("--exact", action="store_true", help="compute with exact rationals (backends interp and layers)")
    run.add_argument("--backend", choices=BACKENDS, default="interp", help="what runs the program (default: interp, the reference interpreter)")
    run.add_argument("--dtype", choices=["float32", "float64"], help="number type of compiled targets (default float32)")
    run.add_argument("--json", action="store_true", help='print {"outputs": [[...], ...]} instead of one line per step')

    compile_ = command("compile", "compile a program for a target and write its files", COMPILE_EPILOG, _compile_command)
    compile_.add_argument("--target", required=True, choices=TARGET_NAMES, help="what to compile for")
    compile_.add_argument("-o", dest="outdir", required=True, metavar="OUTDIR", help="directory to write the files into")
    compile_.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                          help="the dtype the model will run in (default float32; hawk's weights depend on it)")

    stats = command("stats", "print size figures of a program's graph", STATS_EPILOG, _stats)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.add_argument("--target", choices=TARGET_NAMES, help="print the figures of this compiled target")
    stats.add_argument("--input", metavar="TOKENS", help="with --target: measure the target's error on these tokens")

    for sub in (run, compile_, stats):
        sub.add_argument("--variant", metavar="NAME", help="a construction variant of the target (see docs/targets.md)")
        sub.add_argument("--format", choices=FORMATS,
                         help="hf: a transformers checkpoint of a token program (targets mamba and hawk; docs/target-hf.md)")
        sub.add_argument("--vocab", type=_positive_int, metavar="N",
                         help="the input's tokens are 0..N-1, for a program that does not declare them (input x[1] in 0..N)")
        sub.add_argument("--max-len", type=_positive_int, metavar="N",
                         help=f"the longest input sequence: targets that need a bound are built for it (without it: {DEFAULT_MAX_LEN}, "
                         "the others take any length); lsrl run refuses longer inputs on every backend")
        sub.add_argument("--integer-inputs", action="store_true",
                         help="every input value is an integer (lets targets without gates rebuild them from ReLUs); "
                         "lsrl run refuses other inputs on every backend")

    grow = commands.add_parser("grow", help="grow a compiled model without changing what it computes", epilog=GROW_EPILOG,
                               description="grow a compiled model without changing what it computes (docs/growth.md)",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    grow.set_defaults(handler=_grow)
    grow.add_argument("directory", metavar="DIR", help="a compiled model's directory (lsrl compile -o DIR)")
    grow.add_argument("-o", dest="outdir", required=True, metavar="OUTDIR", help="directory to write the grown model into")
    grow.add_argument("--width", type=_positive_int, metavar="N", help="the width to reach (rnn, lstm, gru, hawk: hidden_size; "
                      "mamba: d_model; linear-rnn: state_size)")
    grow.add_argument("--layers", type=_positive_int, metavar="N", help="the number of layers to reach (rnn, lstm, gru: num_layers; "
                      "mamba: n_layer; hawk: num_hidden_layers; linear-rnn: num_blocks)")
    grow.add_argument("--to", metavar="CONFIG.json", help="the sizes to reach, as a JSON object of the target's names "
                      "(or a transformers config.json)")
    grow.add_argument("--at", type=int, metavar="K", help="insert the new layers before layer K (0: below the first; "
                      "default: on top)")
    grow.add_argument("--init", default=DEFAULT_INIT, metavar="KIND:SCALE",
                      help=f"how free weights are drawn: normal:STD, uniform:BOUND or zeros (default {DEFAULT_INIT})")
    grow.add_argument("--seed", type=int, default=0, help="the seed of the free weights (default 0)")

    ir = command("ir", "print a program's graph in the IR text form", IR_EPILOG, _ir)
    ir.add_argument("--after", metavar="PASS", help="print the graph after this pass")
    ir.add_argument("--emit", choices=["mlir"], help="print the lowered program as an MLIR module (the mlir target's model.mlir)")
    ir.add_argument("--dtype", choices=["float32", "float64"], help="with --emit mlir: the module's number type (default float32)")

    for sub in (run, compile_):
        sub.add_argument("--schedule", choices=SCHEDULES, default=RECURRENT,
                         help="the form of the state layers' recurrences in forward (targets torch and jax; backend "
                         "layers runs the plan exactly with --exact): recurrent, chunk, scan, or auto (from "
                         f"--max-len; docs/schedules.md); default {RECURRENT}")
    for sub in (run, compile_, ir):
        sub.add_argument("--chunk", type=_positive_int, default=DEFAULT_CHUNK, metavar="C",
                         help=f"the chunk size of the chunked form (default {DEFAULT_CHUNK})")

    for sub in (run, compile_, stats, ir):
        sub.add_argument("--input-range", metavar="LO,HI", type=_input_range,
                         help="bounds of every input value that linearize and the targets may assume (either side "
                         "may be empty: unbounded); lsrl run refuses inputs outside them on every backend")
    add_bench_command(commands, _ArgumentParser)
    return parser


def _grow(args: argparse.Namespace, sources: dict[str, str]) -> None:
    from lsrl.model_dirs import grow_directory

    grow_directory(args)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _input_range(text: str) -> tuple[Optional[mpq], Optional[mpq]]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LO,HI (e.g. 0,1 or 0,), got {text!r}")
    try:
        lo, hi = (exact(p) if p.strip() else None for p in parts)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a range of numbers: {text!r}") from None
    if lo is not None and hi is not None and lo > hi:
        raise argparse.ArgumentTypeError(f"empty range {text!r}")
    return lo, hi


# Options whose value may start with '-': argparse takes "-1,1" or "-1 0 1" for an option (only a
# lone negative number passes its test), so such a value is joined to its option as --OPTION=VALUE.
NEGATIVE_VALUE_OPTIONS = ("--input", "--input-range", "--max-len")
NEGATIVE_VALUE = re.compile(r"-[0-9./]")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in NEGATIVE_VALUE_OPTIONS and NEGATIVE_VALUE.match(arg):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


def main(argv: Optional[Sequence[str]] = None) -> int:
    sources: dict[str, str] = {}
    try:
        args = _parser().parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
        args.handler(args, sources)
    except LsrlError as e:
        sys.stdout.flush()
        sys.stderr.write(render(e, sources))
        return 1
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    return 0


# --- commands ---------------------------------------------------------------------------------------------
def _compile(args: argparse.Namespace, sources: dict[str, str]) -> Graph:
    graph = compile_file(args.program, dict(args.defines), sources)
    if getattr(args, "vocab", None) is not None:
        _declare_vocab(graph, args.vocab)
    return graph


def _declare_vocab(graph: Graph, vocab: int) -> None:
    """--vocab N: the input's tokens are 0..N-1, as ``input x[D] in 0..N`` declares them."""
    declared = input_tokens(graph.input)
    if declared is None:
        graph.input.attrs["tokens"] = (mpq(0), mpq(vocab))
    elif declared != (0, vocab):
        where = f" (at {graph.input.loc})" if graph.input.loc else ""
        raise UsageError(f"--vocab {vocab} differs from the tokens {declared[0]}..{declared[1]} the program's input declares{where}")


def _check(args: argparse.Namespace, sources: dict[str, str]) -> None:
    graph = _compile(args, sources)
    stats = graph.stats()
    print(
        f"{args.program}: ok, {stats['nodes']} nodes, {stats['state_dims']} state units, "
        f"input length {graph.input.dim}, output length {graph.output_dim}"
    )


def _run(args: argparse.Namespace, sources: dict[str, str]) -> None:
    if os.path.isdir(args.program):  # a compiled (or grown) model's directory: lsrl/model_dirs.py
        from lsrl.model_dirs import run_model

        return _print_outputs(run_model(args, _default_dtype), args)
    if args.exact and args.backend not in EXACT_BACKENDS:
        raise UsageError(f"--exact applies to the backends {' and '.join(EXACT_BACKENDS)}, not '{args.backend}'")
    if args.dtype and args.backend in EXACT_BACKENDS:
        raise UsageError(f"--dtype applies to compiled targets; '{args.backend}' runs in float64, or exactly with --exact")
    if args.format and args.backend in EXACT_BACKENDS:
        raise UsageError(f"--format applies to compiled targets, not '{args.backend}'")
    if args.schedule != RECURRENT and args.backend == "interp":
        raise UsageError("--schedule applies to the layered model (backend layers) and the targets torch and jax, "
                         "not 'interp'")
    graph = _compile(args, sources)
    tokens = read_tokens(args.input)
    check_length(tokens, graph.input.dim, graph.input.name)
    _check_promises(tokens, args, args.backend, graph)
    inputs = tokens if args.exact else [[float(v) for v in token] for token in tokens]
    try:
        if args.backend == "interp":
            outputs = interpret(graph, inputs, exact=args.exact)[0]
        elif args.backend == "layers" and args.schedule != RECURRENT:
            outputs = _scheduled_layers(args, graph, inputs)
        elif args.backend == "layers":
            outputs = _layered(graph, args.input_range).run(inputs, exact=args.exact)[0]
        else:
            outputs = _run_target(args, sources, graph, inputs)
    except NotExactError as e:
        raise LsrlError(f"exact mode: {e.message}; run without --exact", e.loc) from None
    except OverflowError:
        raise UsageError("the program holds numbers too large for float64; run it with --exact") from None
    _print_outputs([[str(v) if args.exact else float(v) for v in step] for step in outputs], args)


def _print_outputs(rows: list[list], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps({"outputs": rows}))
    else:
        for row in rows:
            print(" ".join(v if args.exact else repr(v) for v in row))


def _options(args: argparse.Namespace) -> Options:
    max_len = DEFAULT_MAX_LEN if args.max_len is None else args.max_len
    # run: the dtype it runs in (its default float32); stats: float32
    return Options(args.input_range, args.integer_inputs, max_len, args.variant, getattr(args, "dtype", None) or "float32",
                   args.format, schedule=getattr(args, "schedule", RECURRENT), chunk=getattr(args, "chunk", DEFAULT_CHUNK))


def _compile_target(args: argparse.Namespace, sources: dict[str, str], graph: Graph, target: str,
                    dtype: Optional[str] = None):
    """The compiled target (for ``dtype``, else the one the options name); its warnings are the
    caller's to show (run shows those about its dtype)."""
    from lsrl.targets import compile_to

    options = _options(args)
    if dtype is not None:
        options = replace(options, dtype=dtype)
    return compile_to(graph, target, options, dict(args.defines), sources)


def _warn(warnings: Sequence[CompileWarning], sources: dict[str, str]) -> None:
    for warning in warnings:
        sys.stderr.write(render(warning, sources))


def _run_target(args: argparse.Namespace, sources: dict[str, str], graph: Graph, inputs):
    from lsrl.targets import run_compiled

    compiled = _compile_target(args, sources, graph, args.backend)
    dtype = args.dtype or _default_dtype(compiled)
    if dtype != compiled.config["dtype"] and get_target(args.backend).dtype_specific:
        try:
            compiled = _compile_target(args, sources, graph, args.backend, dtype)  # weights for float64
        except LsrlError as e:  # float64 weights cannot be built: float32, warned, is what there is
            _note(f"float32 is not proven to compute this program on the {args.backend} target, and float64 "
                  f"weights cannot be built ({e.message}); running in float32")
            dtype = "float32"
    if dtype != (args.dtype or "float32"):
        _note(f"float32 is not proven to compute this program on the {args.backend} target "
              "(--dtype float32 shows why); running in float64")
    # a warning about the other dtype says nothing about these outputs
    _warn([w for w in compiled.warnings if w.dtype in (None, dtype)], sources)
    return run_compiled(compiled, inputs, dtype)[0]


def _default_dtype(compiled) -> str:
    """float32, unless the compiler cannot prove it right for this program: then float64, so that
    a result is never silently wrong for want of asking for float64."""
    return "float64" if compiled.config.get("precision", {}).get("float32") == UNPROVEN else "float32"


def _note(message: str) -> None:
    sys.stderr.write(f"{PROGRAM}: note: {message}\n")


def _compile_command(args: argparse.Namespace, sources: dict[str, str]) -> None:
    compiled = _compile_target(args, sources, _compile(args, sources), args.target)
    _warn(compiled.warnings, sources)
    try:
        written = compiled.write(args.outdir)
    except OSError as e:
        raise UsageError(f"cannot write {args.outdir}: {e.strerror or e}") from None
    print(f"{args.outdir}: wrote {', '.join(written)} (target {args.target})")


def _check_promises(tokens: Sequence[Sequence[mpq]], args: argparse.Namespace, backend: str, graph: Graph) -> None:
    """The inputs keep what --input-range, --integer-inputs, --max-len and the input's declared
    tokens promise, whatever runs them: a model built on a promise computes nothing meaningful
    where it is broken, and a command must not pass on one backend and fail on another."""
    lo, hi = args.input_range or (None, None)
    declared = input_tokens(graph.input)
    for t, token in enumerate(tokens, 1):
        for v in token:
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise UsageError(f"input {v} at step {t} is outside --input-range [{lo}, {hi}]")
            if args.integer_inputs and v.denominator != 1:
                raise UsageError(f"input {v} at step {t} is not an integer, but --integer-inputs was given")
            if declared is not None and not (v.denominator == 1 and declared[0] <= v < declared[1]):
                where = f" (--vocab {args.vocab})" if getattr(args, "vocab", None) else f" (declared at {graph.input.loc})"
                raise UsageError(f"input {v} at step {t} is not one of the input's tokens {declared[0]}..{declared[1]}{where}")
    if args.max_len is not None:
        if len(tokens) > args.max_len:
            raise UsageError(f"--input has {len(tokens)} tokens, more than --max-len {args.max_len}")
    elif len(tokens) > DEFAULT_MAX_LEN and _bounded_length(backend):
        raise UsageError(
            f"--input has {len(tokens)} tokens, more than the {DEFAULT_MAX_LEN} the target {backend} is built for "
            "by default (give --max-len)"
        )


def _bounded_length(backend: str) -> bool:
    """Whether the backend is a target built for sequences of at most --max-len tokens."""
    from lsrl.backends import get_target

    return backend not in EXACT_BACKENDS and get_target(backend).bounded_length


def _layered(graph: Graph, input_range: object = None):
    """The linearized layered model (the passes are imported only when asked for)."""
    from lsrl.passes import lower

    return lower(graph, input_range=input_range)


def _scheduled_layers(args: argparse.Namespace, graph: Graph, inputs):
    """The layered model's outputs with its state layers in the forms of the schedule plan."""
    from lsrl.ir.plan_eval import run_plan
    from lsrl.passes.schedule import schedule

    model = _layered(graph, args.input_range)
    length = DEFAULT_MAX_LEN if args.max_len is None else args.max_len
    return run_plan(model, schedule(model, args.schedule, args.chunk, length), [inputs], exact=args.exact)[0]


def _stats(args: argparse.Namespace, sources: dict[str, str]) -> None:
    if args.input is not None and args.target is None:
        raise UsageError("--input applies to stats with --target (it measures the target's error)")
    start = time.perf_counter()
    graph = _compile(args, sources)
    if args.target is not None:
        figures = _target_stats(args, sources, graph)
    else:
        model = _layered(graph, args.input_range)
        seconds = time.perf_counter() - start
        program = graph.stats()
        figures = {
            "nodes": program["nodes"],
            "declared_state_dims": program["state_dims"],
            **model.stats(),
            "compile_seconds": round(seconds, 6),
        }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {_text(value)}")


def _text(figure: object) -> str:
    """A figure for people: a count per kind as "relu 3, state 2", a missing value as "-"."""
    if figure is None:
        return "-"
    if isinstance(figure, dict):
        return ", ".join(f"{key} {_text(value)}" for key, value in figure.items())
    return str(figure)


def _target_stats(args: argparse.Namespace, sources: dict[str, str], graph: Graph) -> dict[str, object]:
    """The target's own figures and, given --input, its largest output error against exact (and
    for --format hf the config and the smallest logit margin)."""
    from lsrl.backends import get_target

    start = time.perf_counter()
    compiled = _compile_target(args, sources, graph, args.target)
    figures: dict[str, object] = {"target": args.target, "variant": compiled.config.get("variant"), **compiled.figures}
    figures["compile_seconds"] = round(time.perf_counter() - start, 6)
    if compiled.checkpoint is not None:
        figures["config"] = compiled.checkpoint
    if args.input is not None:
        tokens = read_tokens(args.input)
        check_length(tokens, graph.input.dim, graph.input.name)
        _check_promises(tokens, args, args.target, graph)
        try:
            want = interpret(graph, tokens, exact=True)[0]
        except NotExactError:
            want = interpret(graph, [[float(v) for v in token] for token in tokens])[0]
        floats = [[float(v) for v in token] for token in tokens]
        for dtype in get_target(args.target).dtypes(compiled.config["dtype"], compiled.config.get("checkpoint")):
            got, margin = _outputs(compiled, floats, dtype)
            error = max((abs(float(g) - float(w)) for g_row, w_row in zip(got, want) for g, w in zip(g_row, w_row)), default=0.0)
            figures[f"max_error_{dtype}"] = error
            figures[f"error_bound_{dtype}"] = get_target(args.target).error_bound(compiled, dtype)
            if margin is not None:
                figures[f"min_logit_margin_{dtype}"] = margin
    return figures


def _outputs(compiled, inputs: list[list[float]], dtype: str) -> tuple[object, Optional[float]]:
    """A compiled model's outputs on one sequence and, for a checkpoint, its smallest logit margin."""
    from lsrl.targets import run_compiled

    if compiled.checkpoint is None:
        return run_compiled(compiled, inputs, dtype)[0], None
    from lsrl.backends import hf

    logits = hf.compiled_logits(compiled, [[int(v[0]) for v in inputs]], dtype)[0]
    return logits.argmax(-1)[:, None], float(hf.margins(logits).min(initial=float("inf")))


def _ir(args: argparse.Namespace, sources: dict[str, str]) -> None:
    from lsrl.ir.text import (
        print_graph,  # imported only when asked for, as are the passes
    )

    if args.emit is None and args.dtype is not None:
        raise UsageError("--dtype applies to lsrl ir with --emit mlir")
    if args.emit == "mlir":
        if args.after is not None:
            raise UsageError("--emit mlir prints the whole lowered program, after every pass; drop --after")
        _emit_mlir(_compile(args, sources), Options(args.input_range, dtype=args.dtype or "float32"))
        return
    if args.after is None:
        graph = _compile(args, sources)
    elif args.after == "linearize":
        sys.stdout.write(_layered(_compile(args, sources), args.input_range).format().rstrip("\n") + "\n")
        return
    elif args.after in (CHUNK, SCAN):
        from lsrl.passes.schedule import schedule

        print(schedule(_layered(_compile(args, sources), args.input_range), args.after, args.chunk).format())
        return
    else:
        from lsrl.passes import PASS_NAMES, run_pipeline

        if args.after not in PASS_NAMES:
            raise UsageError(f"unknown pass '{args.after}' (the passes, in order: {', '.join(PASS_NAMES)}, linearize; "
                             f"the schedules: {CHUNK}, {SCAN})")
        graph = run_pipeline(_compile(args, sources), until=args.after)

    text = print_graph(graph)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _emit_mlir(graph: Graph, options: Options) -> None:
    """The mlir target's module of the program, lowered as ``lsrl compile --target mlir`` lowers it
    (IREE's bindings imported only now)."""
    from lsrl.backends.mlir_code import module_source
    from lsrl.backends.mlir_spec import ModelSpec
    from lsrl.targets import lower_for_target

    model, _, options = lower_for_target(graph, get_target("mlir"), options)
    sys.stdout.write(module_source(ModelSpec.of_model(model, options.plan), options.dtype))


if __name__ == "__main__":
    sys.exit(main())
