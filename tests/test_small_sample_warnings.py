"""Numbers that rest on too few codes say so (issue 19, item 9): a boundary fitted on fewer than 100 codes a side
(list-directions, after fit-boundaries, the report's directions table) and an edit rate on fewer than 30 items
(the report's edit-evaluation table, after render-edits)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.app import app
from ganinv.directions.caveats import MIN_CODES_PER_SIDE, boundary_caveat, edit_row_caveat, rate_caveat
from report import ReportConfig, build_report
from runtime.config import DiscoverDirectionsConfig, FitBoundariesConfig
from runtime.directions import discover, fit_from_store, save
from storage import LatentStore


@pytest.fixture
def fitted(edit_store):
    """The 48-item tiny world with InterFaceGAN boundaries from its labels and two SeFa directions."""
    found = fit_from_store(edit_store, FitBoundariesConfig(attributes=("a", "b")))
    found += discover(edit_store, DiscoverDirectionsConfig(methods=("sefa",), num_directions=2), device="cpu")
    save(edit_store, found, made_by={"flow": "test"}, overwrite=False, run_id="test")
    return edit_store, {d.name: d for d in found}


def test_list_directions_warns_of_boundaries_fitted_on_few_codes(fitted):
    store, found = fitted
    result = CliRunner().invoke(app, ["list-directions", store])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert sorted(line.split(":")[1].strip() for line in warned) == ["interfacegan-a", "interfacegan-b"]
    p = found["interfacegan-a"].provenance
    per_side = p["num_train"] + p["num_val"]
    assert per_side < MIN_CODES_PER_SIDE
    assert f"fitted on {per_side} codes a side, fewer than 100" in result.output
    assert f"val_accuracy {p['val_accuracy']:.2g}" in result.output


def test_the_report_flags_the_same_boundaries_and_small_edit_rates(fitted, tmp_path):
    store, _ = fitted
    rows = [dict(direction="interfacegan-a", method="interfacegan", target="a", strength=2.0, flip_rate=1.0,
                 num_eligible=1, num_items=4, interference=0.0),
            dict(direction="sefa-0", method="sefa", target=None, strength=2.0, flip_rate=None, num_eligible=0,
                 num_items=40, interference=0.1)]
    result = build_report(store, tmp_path / "reports", ReportConfig(run="r", fid=False, edit_rows=rows))
    directions = {d["name"]: d["caveat"] for d in result.metrics["edits"]["directions"]}
    assert directions["sefa-0"] is None and "codes a side" in directions["interfacegan-a"]
    evaluation = result.metrics["edits"]["evaluation"]
    assert evaluation[0]["caveat"].startswith("flip rate on 1 item(s), fewer than 30")
    assert evaluation[1]["caveat"] is None  # no target: its rates are over all 40 items
    html = result.path.read_text()
    assert "flip rate on 1 item(s)" in html and "<th class=\"l\">warning</th>" in html


def test_caveats_need_their_sample_sizes():
    assert boundary_caveat({"method": "sefa", "eigenvalue": 3.0}) is None
    assert boundary_caveat({"num_train": 70, "num_val": 30, "val_accuracy": 0.9}) is None
    assert "fitted on 11 codes a side" in boundary_caveat({"num_train": 7, "num_val": 4, "val_accuracy": 0.4})
    assert rate_caveat(30) is None and "+-9 points" in rate_caveat(29)
    assert edit_row_caveat({"target": "a", "num_eligible": 100, "num_items": 5}).startswith("rates on 5 item(s)")
