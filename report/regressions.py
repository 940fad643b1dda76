"""Step 3 of a report: compare with the previous run and flag metrics that got worse by more than a threshold.

A check compares one number of two metrics.json bodies. It is skipped (listed under `not_compared` with the reason)
when either run lacks the number, so a run that adds a metric never fails because of it. Changes are "worse"
in the metric's bad direction only: an improvement never regresses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ganinv.errors import UserError
from ganinv.item_metrics import PERCEPTUAL
from ganinv.item_metrics import label as metric_label


class ThresholdError(UserError, ValueError):
    """A regression threshold that does not exist or is not a number."""


@dataclass(frozen=True)
class Thresholds:
    """How much worse than the previous run a metric may get before the report flags it.

    `*_drop` / `*_rise` in the metric's units (absolute) unless named `_rel` (a fraction of the previous value).
    """

    psnr_drop_db: float = 0.5           # mean PSNR over done items
    ssim_drop: float = 0.01             # mean SSIM
    failure_rate_rise: float = 0.01     # failed / (done + failed): one percentage point
    perceptual_rise_rel: float = 0.05   # mean LPIPS or clf-perceptual distance: 5 %
    fd_clf_rise_rel: float = 0.20       # FD-clf (noisy at small N, hence a wider margin)
    fid_rise_rel: float = 0.10
    seconds_per_image_rise_rel: float = 0.50  # device-seconds per image

    @classmethod
    def parse(cls, items: Sequence[str]) -> Thresholds:
        """From 'name=value' strings (CLI --threshold), e.g. ['psnr_drop_db=0.3']."""
        values = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep:
                raise ThresholdError(f"threshold {item!r}: write NAME=VALUE with NAME one of {cls.names()}")
            try:
                values[name.strip()] = float(value)
            except ValueError:
                raise ThresholdError(f"threshold {item!r}: {value!r} is not a number") from None
        return cls.with_overrides(values)

    @classmethod
    def with_overrides(cls, values: Mapping[str, float]) -> Thresholds:
        """The defaults with some fields replaced by name (the flow's `thresholds` parameter)."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ThresholdError(f"unknown threshold(s) {unknown}: write NAME=VALUE with NAME one of {cls.names()}")
        return cls(**{name: float(value) for name, value in values.items()})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class Check:
    name: str            # the Thresholds field
    path: tuple[str, ...]  # where the number lives in metrics.json
    label: str
    worse: str           # 'lower' or 'higher'
    relative: bool


@dataclass(frozen=True)
class Regression:
    check: str
    metric: str
    label: str
    previous: float
    current: float
    change: float        # current - previous (relative to previous for relative checks)
    threshold: float
    message: str


def checks(perceptual: Sequence[str] = PERCEPTUAL) -> list[Check]:
    out = [Check("psnr_drop_db", ("quality", "psnr", "mean"), "mean PSNR", "lower", False),
           Check("ssim_drop", ("quality", "ssim", "mean"), "mean SSIM", "lower", False),
           Check("failure_rate_rise", ("counts", "failure_rate"), "failure rate", "higher", False)]
    out += [Check("perceptual_rise_rel", ("quality", m, "mean"), f"mean {metric_label(m)}", "higher", True)
            for m in perceptual]
    return out + [Check("fd_clf_rise_rel", ("distribution", "fd_clf", "value"), "FD-clf", "higher", True),
                  Check("fid_rise_rel", ("distribution", "fid", "value"), "FID", "higher", True),
                  Check("seconds_per_image_rise_rel", ("throughput", "device_seconds_per_image"),
                        "device-seconds per image", "higher", True)]


def _get(body: Mapping[str, Any], path: Sequence[str]) -> float | None:
    value: Any = body
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _describe(check: Check, previous: float, current: float, change: float, threshold: float) -> str:
    verb = "fell" if check.worse == "lower" else "rose"
    if check.relative:
        return (f"{check.label} {verb} {abs(change):.1%} ({previous:.4g} → {current:.4g}; threshold "
                f"{threshold:.0%})")
    if check.name == "failure_rate_rise":
        return (f"{check.label} {verb} {abs(change) * 100:.1f} points ({previous:.1%} → {current:.1%}; threshold "
                f"{threshold * 100:.1f} points)")
    unit = " dB" if check.name == "psnr_drop_db" else ""
    return (f"{check.label} {verb} {abs(change):.3g}{unit} ({previous:.4g} → {current:.4g}{unit}; threshold "
            f"{threshold:g}{unit})")


def caveats(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Why the two runs may not be comparable: another generator, dataset or inversion config."""
    found = []
    for what, path in (("generator", ("provenance", "generator", "sha256")),
                       ("dataset", ("provenance", "dataset", "manifest_hash"))):
        before, after = _dig(previous, path), _dig(current, path)
        if before != after:
            found.append(f"the previous run used another {what} ({str(before)[:12]} vs {str(after)[:12]})")
    if _dig(previous, ("provenance", "inversion")) != _dig(current, ("provenance", "inversion")):
        found.append("the previous run used another inversion config")
    return found


def _dig(body: Mapping[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        body = body.get(key) if isinstance(body, Mapping) else None
    return body


def compare(previous: Mapping[str, Any] | None, current: Mapping[str, Any], thresholds: Thresholds
            ) -> tuple[list[Regression], list[dict[str, str]]]:
    """(regressions, not_compared) of `current` against `previous` (metrics.json bodies; None: nothing to compare)."""
    if previous is None:
        return [], [dict(check="all", reason="no earlier run in the reports folder")]
    regressions, skipped = [], []
    for check in checks():
        before, after = _get(previous, check.path), _get(current, check.path)
        if before is None or after is None or (check.relative and before == 0):
            if before is not None or after is not None:  # silent when neither run has it (e.g. FID offline)
                skipped.append(dict(check=check.name, reason=f"{check.label}: "
                                    f"{'previous' if before is None else 'current'} run has no value"))
            continue
        change = (after - before) / abs(before) if check.relative else after - before
        worse_by = -change if check.worse == "lower" else change
        threshold = getattr(thresholds, check.name)
        if worse_by > threshold:
            regressions.append(Regression(check=check.name, metric=".".join(check.path), label=check.label,
                                          previous=before, current=after, change=change, threshold=threshold,
                                          message=_describe(check, before, after, change, threshold)))
    return regressions, skipped
