"""Packaging: what an install puts in site-packages, what importing lsrl loads, and that the
repository stands alone (nothing reads or cites a folder beside the checkout)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_lsrl_leaves_heavy_backends_unloaded() -> None:
    code = (
        "import sys, lsrl, lsrl.ir, lsrl.passes, lsrl.backends, lsrl.targets, lsrl.corpus, lsrl.cli\n"
        "import lsrl.bench.generate, lsrl.bench.verify, lsrl.bench.score\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'jax', 'triton', 'iree'))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_wheel_installs_everything_under_the_lsrl_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("lsrl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"lsrl"}
    for module in ("lsrl/ir/graph.py", "lsrl/passes/linearize.py", "lsrl/backends/target.py", "lsrl/corpus/rows.py",
                   "lsrl/bench/case.py"):
        assert module in names


PARENT_PATH = re.compile(r"(?:\.\./)+[\w.-]+")  # a relative path that climbs out of its folder


def test_no_file_of_the_project_reads_a_folder_beside_the_checkout() -> None:
    """No relative path in a tracked file leaves the checkout, whether it is read from the
    repository's root (commands, CI) or from the file's own folder (links, __file__ paths)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = [
        (name, path)
        for name in tracked if (ROOT / name).is_file()
        for path in PARENT_PATH.findall((ROOT / name).read_text(errors="replace"))
        if any(not (base / path).resolve().is_relative_to(ROOT) for base in (ROOT, (ROOT / name).parent))
    ]
    assert offenders == []
