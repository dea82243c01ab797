"""``lsrl bench generate``: a suite of cases built by an executor, and its manifest.

Cases run in local processes (``concurrent.futures``) or on Ray (``--executor ray``, the optional
``ray`` extra); both call ``case.build_case``. A case whose folder already holds the
``case.json`` of a successful build of the same spec is not built again, so an interrupted run
continues where it stopped (and a failed case is tried again). ``DIR/manifest.json`` lists
every case with the sha256 of each of its files, or the error that stopped it and its reason
(``refused``: a compiler refusal, a model the compiler cannot stand behind, ``bench/trust.py``, or
an internal error), and counts the refusals by reason; it is rewritten as cases finish.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from lsrl.bench.case import CASE_FILE, build_case
from lsrl.errors import UsageError

MANIFEST, MANIFEST_FORMAT = "manifest.json", "lsrl.bench.manifest"
EXECUTORS = ("local", "ray")


def generate(out: str, specs: Sequence[dict], options: dict[str, Any], workers: int = 1, executor: str = "local",
             progress: Callable[[int, int, int], None] | None = None) -> dict[str, Any]:
    """Build every case of ``specs`` under ``out/cases/`` and write ``out/manifest.json``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict] = {}
    todo = []
    for spec in specs:
        finished = _finished(root / "cases" / spec["id"], spec)
        if finished is None:
            todo.append(spec)
        else:
            entries[spec["id"]] = finished
    start = time.time()
    report = progress or (lambda done, total, failed: None)
    report(len(entries), len(specs), sum(1 for e in entries.values() if e["error"]))
    for entry in _execute(executor, workers, todo, root):
        entries[entry["id"]] = entry
        report(len(entries), len(specs), sum(1 for e in entries.values() if e["error"]))
        if len(entries) % 10 == 0:
            _write_manifest(root, specs, entries, options, time.time() - start)
    return _write_manifest(root, specs, entries, options, time.time() - start)


def _finished(folder: Path, spec: dict) -> dict | None:
    try:
        saved = json.loads((folder / CASE_FILE).read_text())
    except (OSError, ValueError):
        return None
    done = saved.get("spec") == spec and saved.get("entry", {}).get("error") is None
    return saved["entry"] if done else None


def _execute(executor: str, workers: int, specs: list[dict], root: Path) -> Iterable[dict]:
    folders = [str(root / "cases" / spec["id"]) for spec in specs]
    if executor == "ray":
        yield from _ray(specs, folders)
    elif workers <= 1:
        yield from map(build_case, specs, folders)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(build_case, spec, folder) for spec, folder in zip(specs, folders)]
            for future in as_completed(futures):
                yield future.result()


def _ray(specs: list[dict], folders: list[str]) -> Iterable[dict]:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs the optional ray package (pip install 'lsrl[ray]'); "
                         "without it, use --workers N for local processes") from None
    ray.init(ignore_reinit_error=True)
    task = ray.remote(build_case)
    pending = [task.remote(spec, folder) for spec, folder in zip(specs, folders)]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


def _write_manifest(root: Path, specs: Sequence[dict], entries: dict[str, dict], options: dict, seconds: float) -> dict:
    listed = []
    for spec in specs:
        if spec["id"] not in entries:
            continue
        entry = dict(entries[spec["id"]])
        entry["files"] = _hashes(root / entry["dir"])
        listed.append(entry)
    manifest = {
        "format": MANIFEST_FORMAT, "options": options, "cases": listed,
        "built": len(listed), "failed": sum(1 for e in listed if e["error"]), "planned": len(specs),
        "refused": refusals(listed),
        "bytes": sum(f["bytes"] for e in listed for f in e["files"].values()),
        "seconds_this_run": round(seconds, 1),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def refusals(entries: Sequence[dict]) -> dict[str, int]:
    """How many cases were refused, by reason."""
    counts: dict[str, int] = {}
    for entry in entries:
        if entry["error"]:
            counts[entry["refused"]] = counts.get(entry["refused"], 0) + 1
    return dict(sorted(counts.items()))


def _hashes(folder: Path) -> dict[str, dict]:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        files[str(path.relative_to(folder))] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return files


class ProgressBar:
    """A one-line progress bar on stderr: cases done, those refused (or failing), and the rate of
    this run."""

    def __init__(self, failed: str = "refused", width: int = 30):
        self.failed, self.width, self.start, self.first = failed, width, time.time(), None

    def __call__(self, done: int, total: int, failed: int) -> None:
        self.first = done if self.first is None else self.first  # (cases an earlier run built)
        filled = self.width * done // max(total, 1)
        rate = (done - self.first) / max(time.time() - self.start, 1e-9) * 60
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} cases, {failed} {self.failed}, "
                         f"{rate:.1f}/min")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
