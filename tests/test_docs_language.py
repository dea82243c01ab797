"""Every code block of docs/language.md is a test.

The fenced blocks of the document follow this convention (the info string after the opening
```` ``` ````):

- ``lsrl`` or ``lsrl FILE``: a program that ``lsrl check`` accepts, saved as FILE (default
  ``prog.lsrl``).
- ``lsrl error`` or ``lsrl error FILE``: a program that ``lsrl check`` refuses (exit status 1). It
  must be followed by a ``console`` block showing the diagnostic.
- ``lsrl library FILE``, ``json FILE``: a file that every example can use (an imported library, an
  ``--input @FILE`` token file); saved under FILE beside every program. A library is not checked by
  itself (it has no input or output); the program that imports it is.
- ``console``: commands run on the last program above it, each ``$ lsrl ...`` line followed by the
  expected output. A command that succeeds must print exactly those lines on stdout and nothing on
  stderr. A command that fails must exit with status 1, print nothing on stdout, and its stderr must
  begin with those lines (at least the ``FILE:LINE:COL: error: MESSAGE`` line; the source line and
  caret may be left out).

A block of any other kind fails the test, as does a markdown table of library costs (header
``| call | ReLUs | gates | state units |``) whose figures differ from the compiled program's.
Each example runs in-process through ``lsrl.cli.main`` in a fresh temporary directory.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lsrl.passes import prepare

from lsrl.builtins import _STDLIB, prelude
from lsrl.cli import main
from lsrl.load import compile_source

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"
EXAMPLES_DIR = DOC.parent.parent / "examples"
DEFAULT_FILE = "prog.lsrl"


@dataclass
class Block:
    info: list[str]
    text: str
    line: int  # of the opening fence, 1-based


@dataclass
class Command:
    argv: list[str]
    expected: list[str]
    line: int


@dataclass
class Example:
    file: str
    source: str
    fails: bool
    line: int
    commands: list[Command] = field(default_factory=list)


def read_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            info, start, body = lines[i][3:].split(), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"docs/language.md:{start}: a code block is never closed")
            blocks.append(Block(info, "\n".join(body) + "\n", start))
        i += 1
    return blocks


def read_console(block: Block) -> list[Command]:
    commands: list[Command] = []
    for offset, line in enumerate(block.text.rstrip("\n").split("\n"), 1):
        if line.startswith("$ "):
            argv = shlex.split(line[2:])
            if argv[:1] != ["lsrl"]:
                raise AssertionError(f"docs/language.md:{block.line + offset}: a console command must start with 'lsrl'")
            commands.append(Command(argv[1:], [], block.line + offset))
        elif commands:
            commands[-1].expected.append(line)
        else:
            raise AssertionError(f"docs/language.md:{block.line + offset}: a console block must start with '$ lsrl ...'")
    return commands


def classify(blocks: list[Block]) -> tuple[list[Example], dict[str, str]]:
    """The examples (a program and the commands run on it) and the shared files."""
    examples: list[Example] = []
    shared: dict[str, str] = {}
    for block in blocks:
        where = f"docs/language.md:{block.line}"
        kind, rest = (block.info[0], block.info[1:]) if block.info else ("", [])
        if kind == "lsrl" and rest[:1] == ["library"]:
            assert len(rest) == 2, f"{where}: write ```lsrl library FILE"
            assert rest[1] not in shared, f"{where}: a second file named {rest[1]}"
            shared[rest[1]] = block.text
        elif kind == "json":
            assert len(rest) == 1, f"{where}: write ```json FILE"
            assert rest[0] not in shared, f"{where}: a second file named {rest[0]}"
            shared[rest[0]] = block.text
        elif kind == "lsrl":
            fails = rest[:1] == ["error"]
            names = rest[1:] if fails else rest
            assert len(names) <= 1 and all(n.endswith(".lsrl") for n in names), f"{where}: unknown info string {block.info}"
            examples.append(Example(names[0] if names else DEFAULT_FILE, block.text, fails, block.line))
        elif kind == "console" and not rest:
            assert examples, f"{where}: a console block needs a program above it"
            examples[-1].commands += read_console(block)
        else:
            raise AssertionError(f"{where}: a code block of unknown kind {' '.join(block.info)!r}")
    for ex in examples:
        if ex.fails:
            assert ex.commands, f"docs/language.md:{ex.line}: an error example needs a console block with its diagnostic"
    return examples, shared


try:
    EXAMPLES, SHARED = classify(read_blocks(DOC.read_text(encoding="utf-8")))
    PROBLEM = ""
except AssertionError as e:  # reported by test_every_block_is_classified, not as a collection error
    EXAMPLES, SHARED, PROBLEM = [], {}, str(e)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_every_block_is_classified() -> None:
    assert not PROBLEM, PROBLEM


def test_the_document_has_examples_of_every_kind() -> None:
    assert sum(not ex.fails for ex in EXAMPLES) >= 30
    assert sum(ex.fails for ex in EXAMPLES) >= 30
    assert any(cmd.argv[0] == "run" for ex in EXAMPLES for cmd in ex.commands)
    assert SHARED


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda ex: f"line{ex.line}")
def test_example(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in {**SHARED, example.file: example.source}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")

    status, out, err = run_cli(["check", example.file], capsys)
    if example.fails:
        assert status == 1 and "error: " in err, f"docs/language.md:{example.line}: the program should fail lsrl check\n{out}{err}"
    else:
        assert status == 0, f"docs/language.md:{example.line}: lsrl check fails\n{err}"

    for cmd in example.commands:
        where = f"docs/language.md:{cmd.line}: lsrl {shlex.join(cmd.argv)}"
        assert cmd.argv[1:2] == [example.file], f"{where}: the command should run {example.file}"
        status, out, err = run_cli(cmd.argv, capsys)
        if status == 0:
            assert err == "", f"{where}: unexpected stderr\n{err}"
            assert out.rstrip("\n").split("\n") == cmd.expected, f"{where}: stdout differs\n{out}"
        else:
            assert status == 1, f"{where}: exit status {status}"
            assert out == "", f"{where}: stdout of a failing command\n{out}"
            got = err.rstrip("\n").split("\n")
            assert cmd.expected, f"{where}: the command fails but the document expects no error\n{err}"
            assert got[: len(cmd.expected)] == cmd.expected, f"{where}: stderr differs\n{err}"


def test_examples_quoted_from_the_repository_match_it() -> None:
    """A program named like a file of examples/ (the worked example) is that file, verbatim."""
    quoted = [ex for ex in EXAMPLES if (EXAMPLES_DIR / ex.file).is_file()]
    assert quoted
    for ex in quoted:
        assert ex.source == (EXAMPLES_DIR / ex.file).read_text(encoding="utf-8"), ex.file


# --- the table of library costs ------------------------------------------------------------------
COST_HEADER = "| call | ReLUs | gates | state units |"
COST_PRELUDE = "input v[3]\nx = v[0]\ny = v[1]\n"  # the names a row's call may use


def cost_rows() -> list[tuple[int, str, tuple[int, int, int]]]:
    rows = []
    lines = DOC.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        if line.strip() != COST_HEADER:
            continue
        for j in range(i + 2, len(lines)):
            cells = [c.strip() for c in lines[j].strip().strip("|").split("|")] if lines[j].startswith("|") else []
            if len(cells) != 4:
                break
            call = re.fullmatch(r"`([^`]+)`", cells[0])
            assert call, f"docs/language.md:{j + 1}: the call must be written in backticks"
            rows.append((j + 1, call[1], tuple(int(c) for c in cells[1:])))
    return rows


COSTS = cost_rows()


def units(call: str) -> tuple[int, int, int]:
    """ReLU, product and state units of the call, in the graph linearize schedules (comparisons
    and conditionals expanded into their ReLUs)."""
    graph = prepare(compile_source(COST_PRELUDE + f"output {call}\n", "cost.lsrl"))
    count = {"relu": 0, "mul": 0, "state": 0}
    for node in graph:
        if node.kind in count:
            count[node.kind] += node.dim
    return count["relu"], count["mul"], count["state"]


@pytest.mark.parametrize("line, call, figures", COSTS, ids=[f"line{r[0]}" for r in COSTS])
def test_cost_table(line: int, call: str, figures: tuple[int, int, int]) -> None:
    assert units(call) == figures, f"docs/language.md:{line}: {call}"


def test_the_cost_table_covers_the_library() -> None:
    called = {re.match(r"\w+", call)[0] for _, call, _ in COSTS}
    assert set(_STDLIB) <= called


def test_every_predefined_name_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in prelude().names:
        assert f"`{name}" in text, name
