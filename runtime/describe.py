"""What `ganinv store-info` says of a store's stages beyond the inversion: its restoration, its pivotal refinement,
its refinement passes (`ganinv refine`), its out-of-distribution scores."""

from __future__ import annotations

import json

import numpy as np

from runtime.ood import UNUSUAL, describe_store
from storage import LatentStore, code_refinements, refinements


def stage_lines(store: LatentStore) -> list[str]:
    """`name  text` lines, one per stage the store has (none for a plain store)."""
    lines = []
    restoration = store.attributes.inversion.get("restoration")
    if restoration:
        clean = restoration.get("clean")
        lines.append(f"restoration {restoration['task']}: {json.dumps(restoration['degradation'], sort_keys=True)}"
                     f"{', observation kept' if restoration.get('keep_observed') else ''}"
                     f"{f', scored against {clean}' if clean else ''}")
    attrs = refinements.pivotal_attrs(store)
    if attrs:
        config = attrs.get("config", {})
        per_item = attrs["values_per_item"] * np.dtype(attrs["numpy_dtype"]).itemsize
        lines.append(f"refinement  pivotal: rank {attrs['rank']}, {config.get('num_steps')} steps, loss "
                     f"{config.get('loss')}; {per_item:,} bytes per item ({attrs['dtype']})")
    for done in code_refinements.passes(store):
        state = "complete" if done["complete"] else "open (run `ganinv refine` again with the same --steps)"
        refined = f", {done['refined']} items" if "refined" in done else ""
        lines.append(f"refinement  {done['name']}: +{done['more_steps']} steps from {done['from_steps']} "
                     f"({done['space']}){refined}, {state}")
    scores = describe_store(store)
    if scores is not None:
        quantiles = ", ".join(f"{k} {v:.3f}" for k, v in scores.quantiles.items()) or "none yet"
        lines.append(f"ood score   {scores.scored} items from {', '.join(scores.metrics) or '-'}: {quantiles}; "
                     f"{scores.unusual} above {UNUSUAL}")
    return lines
