"""Every example command runs as written: the `lsrl ...` lines of every --help text and the `lsrl ...`
commands of README.md and docs/cli.md, from the repository root, exit with status 0."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from lsrl.cli import _parser, main

ROOT = Path(__file__).resolve().parent.parent


def help_examples() -> list[str]:
    """The example lines of the epilogs of ``lsrl --help`` and of every command's --help."""
    parser = _parser()
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    epilogs = [parser.epilog, *(sub.epilog for action in commands for sub in action.choices.values())]
    return [line.strip() for epilog in epilogs for line in epilog.splitlines() if line.startswith("  lsrl ")]


def document_commands(path: Path, inline: bool) -> list[str]:
    """The `lsrl ...` commands in the code blocks of a Markdown file (also after `&&`), and with
    ``inline`` those in `code spans` of its text."""
    found, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            found += [part.strip() for part in line.split("&&") if part.strip().startswith("lsrl ")]
        elif inline:
            found += [span for span in re.findall(r"`([^`]+)`", line) if span.startswith("lsrl ")]
    return found


# each command once, as its words (a trailing comment left out)
EXAMPLES = sorted({
    shlex.join(shlex.split(command, comments=True))
    for command in help_examples() + document_commands(ROOT / "README.md", inline=True)
    + document_commands(ROOT / "docs" / "cli.md", inline=False)  # its synopses are "usage: lsrl ..." lines
})


def test_the_examples_are_found() -> None:
    readme = document_commands(ROOT / "README.md", inline=False)
    # the set-up command runs an example after installing; the command list shows every command
    assert 'lsrl run examples/more_ones.lsrl --input "1 0 0 1 1 1 0" --exact' in readme
    assert {command.split()[1] for command in readme} == {"check", "run", "compile", "stats", "ir"}


@pytest.mark.parametrize("command", EXAMPLES)
def test_example_runs_as_written(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    argv = shlex.split(command)[1:]
    for i, arg in enumerate(argv[:-1]):
        if arg == "-o":  # written into a fresh directory, not into the checkout
            argv[i + 1] = str(tmp_path / argv[i + 1])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status == 0, err.getvalue()
    assert "error" not in err.getvalue()


def letters(word: str) -> list[int]:
    return [ord(c) - ord("A") + 1 for c in word]


def test_the_capitals_prompt_is_lsrls() -> None:
    """The query CAN, then every country and its capital in the table's order: 153 letter tokens,
    whose lookup gives OTT."""
    pairs = json.loads((ROOT / "examples" / "data" / "country_capitals.json").read_text())["pairs"]
    prompt = json.loads((ROOT / "examples" / "data" / "capitals_prompt.json").read_text())
    assert prompt == letters("CAN") + [t for country, capital in pairs.items() for t in letters(country + capital)]
    assert len(prompt) == 153
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["run", str(ROOT / "examples" / "tok2tok.lsrl"), "-D", "seq_len=3",
                       "--input", f"@{ROOT / 'examples' / 'data' / 'capitals_prompt.json'}", "--exact"])
    assert status == 0 and out.getvalue().split()[-3:] == [str(t) for t in letters(pairs["CAN"])]
