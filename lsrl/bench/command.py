"""``lsrl bench generate|verify|score`` (docs/bench.md): the command line of the benchmark
generator, added to ``lsrl``'s parser by ``add_bench_command``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lsrl.errors import LsrlError, UsageError

BENCH_EPILOG = """\
example:
  lsrl bench generate -o out/bench --programs more_ones.lsrl --targets torch,rnn --obfuscate none,mix
then "lsrl bench verify out/bench" checks every case's labels by interchange interventions, and
"lsrl bench score out/bench SUBMISSION.json" scores a researcher's claims against them.
--random N adds N random programs; --workers N builds cases in N local processes.
docs/bench.md describes the files of a suite and the submission format."""

DEFAULT_TARGETS = "torch,rnn,lstm,gru,mamba,hawk"


def add_bench_command(commands: Any, parser_class: type) -> None:
    bench = commands.add_parser("bench", help="generate, verify and score interpretability benchmarks",
                                description="interpretability benchmarks: compiled models with verified ground truth",
                                epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = bench.add_subparsers(title="bench commands", metavar="COMMAND", required=True, parser_class=parser_class)
    generate = sub.add_parser("generate", help="build a suite of cases into a folder", epilog=BENCH_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    generate.add_argument("-o", "--out", required=True, metavar="DIR", help="the suite's folder (created; a run continues there)")
    generate.add_argument("--programs", metavar="GLOB", default="*.lsrl",
                          help="the table's example programs whose file matches GLOB (default all; 'none' for none)")
    generate.add_argument("--random", type=int, default=0, metavar="N", help="add N random programs")
    generate.add_argument("--size", type=int, default=4, metavar="S", help="the size of random programs (statements)")
    generate.add_argument("--gated", action="store_true",
                          help="random programs may hold values in gated states (computed by torch and jax only)")
    generate.add_argument("--targets", default=DEFAULT_TARGETS, help=f"comma-separated targets (default {DEFAULT_TARGETS})")
    generate.add_argument("--obfuscate", default="none", help="comma-separated: none, permute, scale, mix, distract (default none)")
    generate.add_argument("--datasets", type=int, default=4, metavar="K", help="input sequences per case (default 4)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--workers", type=int, default=1, help="local processes (default 1)")
    generate.add_argument("--executor", choices=["local", "ray"], default="local",
                          help="ray: run the cases as Ray tasks (needs the optional ray package)")
    generate.set_defaults(handler=_generate)
    verify = sub.add_parser("verify", help="check every case's ground truth by interchange interventions")
    verify.add_argument("suite", metavar="DIR")
    verify.set_defaults(handler=_verify)
    score = sub.add_parser("score", help="score a submission against the ground truth")
    score.add_argument("suite", metavar="DIR")
    score.add_argument("submission", metavar="SUBMISSION.json")
    score.set_defaults(handler=_score)


def _generate(args: argparse.Namespace, sources: dict) -> None:
    from lsrl.backends import TARGET_NAMES
    from lsrl.bench.cases import case_specs, example_programs
    from lsrl.bench.generate import ProgressBar, generate
    from lsrl.bench.obfuscate import OBFUSCATIONS
    from lsrl.bench.random_programs import random_programs

    targets = [t for t in args.targets.split(",") if t]
    obfuscations = [o for o in args.obfuscate.split(",") if o]
    for name, known, given in (("target", TARGET_NAMES, targets), ("obfuscation", OBFUSCATIONS, obfuscations)):
        unknown = [g for g in given if g not in known]
        if unknown or not given:
            raise UsageError(f"unknown {name} '{unknown[0] if unknown else ''}' ({name}s: {', '.join(known)})")
    if args.datasets < 2:
        raise UsageError("--datasets must be at least 2 (interventions take a base and a source sequence)")
    programs = [] if args.programs == "none" else example_programs(args.programs)
    if args.size < 1:
        raise UsageError(f"--size must be at least 1, not {args.size}")
    programs += random_programs(args.random, args.size, args.seed, args.gated)
    if not programs:
        raise UsageError(f"no programs: no example matches --programs '{args.programs}' and --random is 0")
    specs = case_specs(programs, targets, obfuscations, args.datasets, args.seed)
    options = {k: getattr(args, k) for k in ("programs", "random", "size", "gated", "targets", "obfuscate", "datasets",
                                             "seed")}
    manifest = generate(args.out, specs, options, args.workers, args.executor, ProgressBar())
    reasons = ", ".join(f"{n} {reason}" for reason, n in manifest["refused"].items())
    print(f"{args.out}: {manifest['built'] - manifest['failed']} cases built, {manifest['failed']} refused"
          f"{f' ({reasons})' if reasons else ''}, {manifest['bytes'] / 1e6:.1f} MB (manifest.json)")


def _verify(args: argparse.Namespace, sources: dict) -> None:
    from lsrl.bench.generate import ProgressBar
    from lsrl.bench.verify import verify

    summary = _suite_call(verify, args.suite, ProgressBar("failing"))
    print(f"{'case':<44} {'interventions':>13} {'IIA':>6} {'in module':>9} {'IIA':>6} {'target':>6}")
    for case in summary["cases"]:
        module = case.get("module", {})
        print(f"{case['id']:<44} {case.get('interventions', 0):>13} {_ratio(case.get('iia')):>6} "
              f"{module.get('interventions', 0):>9} {_ratio(module.get('iia')):>6} "
              f"{'ok' if case.get('target_agrees') else 'off':>6}"
              + "".join(f"\n    FAILS: {why}" for why in case["failures"]))
    print(f"\n{'target/obfuscation':<20} {'cases':>5} {'interventions':>13} {'in module':>9} {'out of domain':>13} "
          f"{'min IIA':>8} {'target off':>10} {'unproven f64':>12} {'errors':>6} {'failing':>7}")
    for key, row in sorted(summary["table"].items()):
        print(f"{key:<20} {row['cases']:>5} {row['interventions']:>13} {row['in_module']:>9} {row['out_of_domain']:>13} "
              f"{_ratio(row['min_iia'], 4):>8} {row['target_disagrees']:>10} {row['unproven']:>12} {row['errors']:>6} "
              f"{row['failing']:>7}")
    print(f"per case: {args.suite}/verify.json")
    cases = len(summary["cases"])
    if summary["failing"]:
        raise LsrlError(f"{summary['failing']} of {cases} cases of {args.suite} fail verification (IIA below 1.0, "
                        f"target off, unproven float64 or not verified: the FAILS lines above): their ground truth "
                        f"is not verified")
    print(f"all {cases} cases verified: IIA 1.0 at every level, every target's outputs within the stated bound")


def _score(args: argparse.Namespace, sources: dict) -> None:
    from lsrl.bench.score import score

    try:
        submission = json.loads(open(args.submission, encoding="utf-8").read())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the submission {args.submission}: {e}") from None
    result = _suite_call(lambda root: score(root, submission), args.suite)
    print(f"{'case':<44} {'claims':>6} {'precision':>9} {'recall':>6} {'edges':>5} {'edge prec':>9} {'edge rec':>8}")
    for case_id, row in result["cases"].items():
        cells = [_ratio(row["precision"]), _ratio(row["recall"]), row["edges_claimed"],
                 _ratio(row["edges_right"] / row["edges_claimed"] if row["edges_claimed"] else None),
                 _ratio(row["edges_right"] / row["edges_truth"] if row["edges_truth"] else None)]
        print(f"{case_id:<44} {row['claims']:>6} {cells[0]:>9} {cells[1]:>6} {cells[2]:>5} {cells[3]:>9} {cells[4]:>8}")
    print("overall: " + json.dumps(result["overall"]))


def _ratio(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _suite_call(function, suite: str, *more):
    try:
        return function(suite, *more)
    except FileNotFoundError as e:
        raise UsageError(f"{suite} is not a suite (lsrl bench generate --out {suite}): {e.filename} is missing") from None
    except ValueError as e:  # a submission or a suite file that is not what docs/bench.md describes
        raise UsageError(str(e)) from None
