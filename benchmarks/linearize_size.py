"""Layered-model size and compile time, side by side with LSRL's published figures.

    python3 benchmarks/linearize_size.py [--max-seq-len 16] [--repeat 3]

Programs: LSRL's token-to-token lookup (Listing 2, multiplicative conditionals) and its continuous
universal approximator (Listing 1, d_in 2, d_out 1, ReLU conditionals), from the test table's
builders (``lsrl/corpus/cases_lsrl.py``) and, for the compile time from source, ``examples/*.lsrl``.
Compile time is the best of ``--repeat`` runs of parse + passes + linearize. LSRL's figures are
those quoted in issue 4 (its compiler on its notebooks' programs, on this machine).

``state_dims`` counts every unit of the state layers, carried values included; ``declared``
counts the state units the program declares. Dense parameters count every entry of every
layer's matrices and vectors (input maps, transitions, biases, initial states).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lsrl.ir.graph import Graph
from lsrl.ir.layered import LayeredModel
from lsrl.passes import lower, run_pipeline
from lsrl.passes.linearize import layer_schedule, linearize

from lsrl.corpus.cases_lsrl import continuous_ua, tok2tok

ROOT = Path(__file__).resolve().parent.parent

try:
    from lsrl.load import compile_file
except ImportError:  # the language front end is optional here: fall back to the Python builder
    compile_file = None

LSRL = {
    "tok2tok, seq_len 3": {
        "layers": 61, "max_width": 5_402, "state_dims": 8_010, "dense_params": 273_687_298,
        "nonzeros": 126_745, "compile_seconds": "3.5-6",
    },
    "tok2tok, seq_len 8": {"layers": 61, "dense_params": 1_473_046_023, "compile_seconds": 39},
    "continuous, 2 -> 1": {"layers": 20, "max_width": 290, "dense_params": 352_398},
}
FIGURES = ["layers", "max_width", "state_dims", "dense_params", "nonzeros", "compile_seconds"]


def declared_state_units(graph: Graph) -> int:
    return sum(n.dim for n in graph if n.kind == "state")


def timed(build, repeat: int) -> tuple[LayeredModel, Graph, dict[str, float]]:
    """The model, the program graph, and the best time of each phase over ``repeat`` runs."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        graph = build()
        t1 = time.perf_counter()
        canonical = run_pipeline(graph)
        t2 = time.perf_counter()
        model = linearize(canonical)
        t3 = time.perf_counter()
        for phase, seconds in (("build", t1 - t0), ("passes", t2 - t1), ("linearize", t3 - t2), ("total", t3 - t0)):
            best[phase] = min(best.get(phase, seconds), seconds)
    return model, graph, best


def source_builder(name: str, params: dict, fallback):
    if compile_file is None:
        return fallback, "Python builder"
    return (lambda: compile_file(ROOT / "examples" / name, params)), f"examples/{name}"


def ratio(theirs: object, ours: float) -> str:
    """LSRL's figure over ours; LSRL's time may be a range "a-b"."""
    if theirs is None or not ours:
        return ""
    ends = [float(t) for t in str(theirs).split("-")]
    return "-".join(f"{t / ours:,.1f}" for t in ends) + "x"


def compare(title: str, build, repeat: int) -> None:
    model, graph, seconds = timed(build, repeat)
    stats = dict(model.stats(), compile_seconds=round(seconds["total"], 3))
    lsrl = LSRL[title]
    print(f"\n## {title}")
    print(f"{'':18}{'ours':>14}{'LSRL':>16}{'LSRL / ours':>16}")
    for figure in FIGURES:
        ours, theirs = stats[figure], lsrl.get(figure)
        shown = f"{theirs:,}" if isinstance(theirs, int) else str(theirs or "-")
        print(f"{figure:18}{ours:>14,}{shown:>16}{ratio(theirs, ours):>16}")
    plan = layer_schedule(run_pipeline(graph))
    print(
        f"layer kinds {stats['layer_kinds']}; critical path {plan.critical_path} non-linear layers; "
        f"declared state units {declared_state_units(graph)}, state units {stats['state_dims']} "
        f"({stats['state_carries']} carrying values); carried units in all {stats['carry_units']}"
    )
    tight = lower(graph, input_range=(0, None))
    print(
        f"with input_range (0, inf) (LSRL marks its inputs always_positive): "
        f"max width {tight.stats()['max_width']}, dense {tight.stats()['dense_params']:,}, "
        f"non-zeros {tight.stats()['nonzeros']:,}"
    )


def curve(max_seq_len: int, repeat: int) -> None:
    print("\n## tok2tok (multiplicative) by seq_len: compile time (best of %d, seconds) and size" % repeat)
    header = ["seq_len", "nodes", "canon", "layers", "width", "states", "declared", "dense", "nonzeros",
              "parse", "passes", "linearize", "total", "ms/node"]
    print("".join(f"{h:>10}" for h in header))
    for n in range(2, max_seq_len + 1):
        build, _ = source_builder("tok2tok.lsrl", {"seq_len": n, "conditional": "mul"}, lambda n=n: tok2tok(n, "mul"))
        model, graph, seconds = timed(build, repeat)
        s = model.stats()
        row = [n, len(graph), len(run_pipeline(graph)), s["layers"], s["max_width"], s["state_dims"],
               declared_state_units(graph), s["dense_params"], s["nonzeros"]]
        times = [seconds["build"], seconds["passes"], seconds["linearize"], seconds["total"]]
        print("".join(f"{v:>10,}" for v in row) + "".join(f"{t:>10.3f}" for t in times)
              + f"{1000 * seconds['total'] / len(graph):>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seq-len", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    tok3, source3 = source_builder("tok2tok.lsrl", {"seq_len": 3, "conditional": "mul"}, lambda: tok2tok(3, "mul"))
    tok8, _ = source_builder("tok2tok.lsrl", {"seq_len": 8, "conditional": "mul"}, lambda: tok2tok(8, "mul"))
    cont, _ = source_builder(
        "continuous_ua.lsrl", {"d_in": 2, "d_out": 1, "conditional": "relu"}, lambda: continuous_ua(2, 1, "relu")
    )
    print(f"# Layered model size and compile time (programs from {source3} and its siblings)")
    compare("tok2tok, seq_len 3", tok3, args.repeat)
    compare("tok2tok, seq_len 8", tok8, args.repeat)
    compare("continuous, 2 -> 1", cont, args.repeat)
    curve(args.max_seq_len, args.repeat)


if __name__ == "__main__":
    main()
