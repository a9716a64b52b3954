"""Fine-tuning overhead: attack steps needed to reach a target metric, protected versus scratch."""

from __future__ import annotations

from typing import Any

TARGET_FRACTION = 0.9


def steps_to_reach(steps: list[int], values: list[float], target: float, higher_is_better: bool) -> int | None:
    """The first step whose value reaches ``target``, or ``None`` if it never does within the curve."""
    for step, value in zip(steps, values):
        if (value >= target) if higher_is_better else (value <= target):
            return step
    return None


def default_target(scratch_final: float, higher_is_better: bool) -> float:
    """Within 10% of what the scratch model reaches at the end of the same attack."""
    return scratch_final * TARGET_FRACTION if higher_is_better else scratch_final / TARGET_FRACTION


def fine_tuning_overhead(
    curves: dict[str, tuple[list[int], list[float]]], target: float, higher_is_better: bool
) -> dict[str, Any]:
    """Steps each role's mean curve needs to reach ``target`` (``None``: never within budget), and the
    protected/scratch ratio when both reach it."""
    steps = {role: steps_to_reach(xs, ys, target, higher_is_better) for role, (xs, ys) in curves.items()}
    protected, scratch = steps.get("protected"), steps.get("scratch")
    ratio = protected / scratch if protected is not None and scratch else None
    budget = max(xs[-1] for xs, _ in curves.values())
    return {"target": target, "budget": budget, "steps": steps, "ratio": ratio}


def describe_overhead(overhead: dict[str, Any]) -> str:
    """One line, e.g. ``"never within 200 steps (scratch: 50)"`` or ``"100 vs 50 steps (2.0x)"``."""
    steps, budget = overhead["steps"], overhead["budget"]
    scratch = steps.get("scratch")
    scratch_text = "never" if scratch is None else str(scratch)
    if steps.get("protected") is None:
        return f"never within {budget} steps (scratch: {scratch_text})"
    ratio = f" ({overhead['ratio']:.1f}x)" if overhead["ratio"] is not None else ""
    return f"{steps['protected']} vs {scratch_text} steps{ratio}"
