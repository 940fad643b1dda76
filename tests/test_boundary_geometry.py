"""benchmarks/boundary_geometry.py: the extremes' normals against the all-codes ones, on a tiny world and on planted
codes whose extremes are known to point elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import boundary_geometry as bg


def test_runs_on_the_demo_world_and_writes_every_table(tmp_path):
    out, codes = tmp_path / "bg.json", tmp_path / "codes.npz"
    args = ["--demo", "--num-fit", "400", "--num-eval", "16", "--ratio", "0.1", "--codes", str(codes), "--out", str(out)]
    first = bg.main(args)
    payload = json.loads(out.read_text())
    binary = ["a", "b", "c", "d", "e"]
    assert [(r["attribute"], r["C"]) for r in payload["normals"]] == [(n, C) for n in binary for C in (1.0, 0.001)]
    assert all(-1 <= r[k] <= 1 for r in payload["normals"] for k in ("cos_extremes_all_codes", "cos_half_half"))
    assert len(payload["extremes_profile"]) == len(binary) * (len(binary) - 1)
    assert [(r["fit"], r["direction"], r["sign"]) for r in payload["pair_cut"]] == [
        (fit, d, s) for fit in ("extremes", "all-codes") for d in ("a|b", "b|a") for s in "+-"]
    assert set(payload["edit_rows"]) == {"extremes", "all-codes"}
    assert codes.exists()  # the second run reads the codes instead of sampling: the same normals
    assert bg.main(args)["normals"] == first["normals"]
    with pytest.raises(SystemExit, match="holds 400 codes"):
        bg.main(["--demo", "--num-fit", "200", "--codes", str(codes), "--out", str(out)])


def test_a_confidence_that_follows_a_nuisance_tilts_the_extremes_and_not_the_all_codes_normal():
    # the decision is (almost always) the sign of w[0]; the judge's confidence also grows with w[1] on the positive
    # side and with -w[1] on the negative side (a nuisance the world draws independently): the extremes then differ
    # in w[1] as well, and their normal leans toward it
    rng = np.random.default_rng(0)
    w = rng.standard_normal((20000, 8))
    scores = 1 / (1 + np.exp(-(3 * w[:, 0] + w[:, 1] * np.abs(w[:, 0]))))
    decision, nuisance = np.eye(8)[0], np.eye(8)[1]
    assert bg.all_codes_normal(w, scores) @ decision > 0.98
    extremes = bg.extremes_normal(w, scores, ratio=0.02, C=1.0)
    assert extremes @ decision < 0.97 and extremes @ nuisance > 0.2
    profile = {r["other"]: r for r in bg.extremes_profile({"x": scores, "n": w[:, 1]}, ["x"], ratio=0.02)}
    assert profile["n"]["top"] - profile["n"]["other_positives"] > 0.5
    assert profile["n"]["other_negatives"] - profile["n"]["bottom"] > 0.5
    untilted = 1 / (1 + np.exp(-3 * w[:, 0]))  # the same decision without the nuisance: neither shows
    assert bg.extremes_normal(w, untilted, ratio=0.02, C=1.0) @ nuisance < 0.15
    flat = {r["other"]: r for r in bg.extremes_profile({"x": untilted, "n": w[:, 1]}, ["x"], ratio=0.02)}
    assert abs(flat["n"]["top"] - flat["n"]["other_positives"]) < 0.2


def test_conditional_directions_are_orthogonal_to_the_partner_normal():
    rng = np.random.default_rng(1)
    latents = rng.standard_normal((500, 6))
    normals = {"a": bg.unit(rng.standard_normal(6)), "b": bg.unit(rng.standard_normal(6))}
    dirs = {d.name: d for d in bg.pair_directions(latents, normals, ("a", "b"), "all-codes")}
    assert set(dirs) == {"interfacegan-a", "interfacegan-b", "interfacegan-a|b", "interfacegan-b|a"}
    assert abs(dirs["interfacegan-a|b"].vector @ normals["b"]) < 1e-5
    assert abs(dirs["interfacegan-b|a"].vector @ normals["a"]) < 1e-5
    assert dirs["interfacegan-a"].scale == pytest.approx((latents @ normals["a"]).std(), rel=1e-5)
