"""When a direction's numbers rest on too few codes to be trusted, say so, in one wording everywhere (the CLI after
fit-boundaries, list-directions, the report's tables).

- A boundary: InterFaceGAN fits on the 2 % extremes of 500k samples, 10,000 codes a side; a linear SVM in 512
  dimensions fitted on a few dozen codes separates them whatever the labels are, and its validation accuracy on a
  handful of held-out codes swings by tens of points (0.4 on 64 inverted faces: issue 19).
- A rate (flip rate, interference) on n items has a standard error up to 0.5 / sqrt(n): 9 points at n = 30.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MIN_CODES_PER_SIDE = 100
MIN_ITEMS_PER_RATE = 30


def boundary_caveat(provenance: Mapping[str, Any]) -> str | None:
    """A warning for a boundary fitted on fewer than MIN_CODES_PER_SIDE codes a side (None otherwise, and for
    directions that are not fitted on codes: SeFa, GANSpace)."""
    if "num_train" not in provenance:
        return None
    per_side = int(provenance.get("num_train") or 0) + int(provenance.get("num_val") or 0)
    if per_side >= MIN_CODES_PER_SIDE:
        return None
    accuracy = provenance.get("val_accuracy")
    shown = f" (val_accuracy {accuracy:.2g} on {int(provenance.get('num_val') or 0)} held-out codes a side)" \
        if isinstance(accuracy, (int, float)) else ""
    return (f"fitted on {per_side} codes a side, fewer than {MIN_CODES_PER_SIDE}: not reliable{shown}; invert more "
            "labelled images or fit on samples (--source samples)")


def rate_caveat(n: int | None, what: str = "rate") -> str | None:
    """A warning for a rate computed on fewer than MIN_ITEMS_PER_RATE items (None otherwise)."""
    if n is None or n >= MIN_ITEMS_PER_RATE:
        return None
    return f"{what} on {n} item(s), fewer than {MIN_ITEMS_PER_RATE}: +-{50 / max(n, 1) ** 0.5:.0f} points or more"


def edit_row_caveat(row: Mapping[str, Any]) -> str | None:
    """The warning of one edit-evaluation row (ganinv/directions/evaluate.py): its flip rate's or its interference's
    sample is too small."""
    eligible = row.get("num_eligible")
    if row.get("target") is not None and isinstance(eligible, (int, float)):
        found = rate_caveat(int(eligible), "flip rate")
        if found:
            return found
    items = row.get("num_items")
    return rate_caveat(int(items), "rates") if isinstance(items, (int, float)) else None
