"""Whether the compiler stands behind a case's model (docs/bench.md, "Refused cases").

A suite promises ground truth that interventions confirm. Where the compiler proves no float64
bound on the outputs (verdict ``unproven``), or the target's own outputs on the case's data differ
from the exact ones beyond the stated bound, an intervention may fail by rounding alone and the
labels cannot be checked: ``generate`` refuses such a case and ``verify`` fails a suite holding one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lsrl.bench.intervene import agree

UNPROVEN, TARGET_OFF = "unproven float64", "target off"


def stated_bound(config: dict) -> np.ndarray | float:
    """The compiler's bound on each output's float64 error (0 where it proves the outputs exact;
    where it proves nothing, only rounding is tolerated, and the verdict says "unproven")."""
    if float64_verdict(config) == "unproven":
        return 0.0
    bounds = config.get("error_bound", {})
    per_output = bounds.get("outputs", {}).get("float64")
    if per_output is not None:
        return np.array([b if b is not None else 0.0 for b in per_output])
    return bounds.get("float64") or 0.0


def float64_verdict(config: dict) -> str | None:
    return config.get("precision", {}).get("float64")


def distrust(config: dict, model_outputs: np.ndarray, outputs: np.ndarray) -> dict[str, Any] | None:
    """Why the compiler cannot stand behind the model (the reason, a message and the facts behind
    it: the verdict, the stated bounds, the largest difference from the exact outputs), or None."""
    verdict = float64_verdict(config)
    facts = {"float64": verdict, "error_bound": config.get("error_bound", {}).get("float64"),
             "model_error": float(np.max(np.abs(model_outputs - outputs), initial=0.0))}
    if verdict == "unproven":
        return {"reason": UNPROVEN, **facts,
                "message": "the compiler proves no float64 bound on the model's outputs (verdict unproven), "
                           "so interventions could fail by rounding alone"}
    if not agree(model_outputs, outputs, stated_bound(config)):
        return {"reason": TARGET_OFF, **facts,
                "message": f"the target's float64 outputs differ from the exact ones by {facts['model_error']:.3g}, "
                           f"beyond the stated bound"}
    return None
