"""The direction and edit flows end to end on a tiny store, on real Prefect (the session's test harness, conftest),
real Dask (the clusters of flows/clusters.py, as the inversion flow uses them) and a real Zarr store on disk; and
their CLI commands."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from _edit_helpers import LABELS
from ganinv import edit
from runtime.config import DiscoverDirectionsConfig, ExecutionOptions, FitBoundariesConfig, RenderEditsConfig
from storage import LatentStore
from storage.directions import list_directions, read_direction, read_directions
from storage.edits import EditRun

runner = CliRunner()


@pytest.fixture
def store(edit_store):
    """A fresh copy of the session's tiny edit store (conftest's `edit_store`), by path."""
    return edit_store


def test_fit_boundaries_from_store_labels_with_provenance_and_orthogonal_conditional(prefect_harness, store):
    from flows.fit_boundaries import fit_boundaries

    names = fit_boundaries(store, FitBoundariesConfig(conditions={"a": ("b",)}))
    assert names == [f"interfacegan-{x}" for x in LABELS] + ["interfacegan-a|b"]
    s = LatentStore.open(store)
    conditional, b = read_direction(s, "interfacegan-a|b"), read_direction(s, "interfacegan-b")
    assert abs(float(conditional.vector @ b.vector)) < 1e-5
    assert float(conditional.vector @ read_direction(s, "interfacegan-a").vector) > 0
    p = conditional.provenance
    assert p["source"] == "store" and p["conditions"] == ["b"] and p["num_items"] == s.num_items
    assert p["generator"]["sha256"] == s.attributes.generator.sha256 and p["val_accuracy"] >= 0.7
    made_by = list_directions(s)["interfacegan-a"]["made_by"]
    assert made_by["flow"] == "fit_boundaries" and made_by["config"]["conditions"] == {"a": ["b"]}
    with pytest.raises(FileExistsError, match="overwrite"):
        fit_boundaries(store, FitBoundariesConfig(attributes=("a",)))
    assert fit_boundaries(store, FitBoundariesConfig(attributes=("a",), overwrite=True)) == ["interfacegan-a"]


def test_fit_boundaries_from_classifier_scored_samples(prefect_harness, store):
    from flows.fit_boundaries import fit_boundaries

    config = FitBoundariesConfig(source="samples", attributes=("smiling", "eyeglasses"), num_samples=120,
                                 chosen_num_or_ratio=0.25, conditions={"eyeglasses": ("smiling",)})
    names = fit_boundaries(store, config, ExecutionOptions(batch_size=60, device="cpu"))
    assert names == ["interfacegan-smiling", "interfacegan-eyeglasses", "interfacegan-eyeglasses|smiling"]
    d = read_direction(LatentStore.open(store), "interfacegan-eyeglasses")
    assert d.provenance["source"] == "samples" and d.provenance["num_samples"] == 120
    assert d.provenance["generator"]["identity"] == LatentStore.open(store).attributes.generator.sha256
    assert d.scale == pytest.approx(d.provenance["latent_std"]) and d.scale > 0


def test_discover_directions_writes_sefa_and_ganspace_of_samples_and_corpus(prefect_harness, store):
    from flows.discover_directions import discover_directions

    config = DiscoverDirectionsConfig(num_directions=2, num_samples=2000, ganspace_source="both", sefa_layers=(0, 1))
    names = discover_directions(store, config, ExecutionOptions(device="cpu"))
    assert names == ["sefa-0", "sefa-1", "ganspace-0", "ganspace-1", "ganspace-store-0", "ganspace-store-1"]
    found = {d.name: d for d in read_directions(LatentStore.open(store))}
    assert found["sefa-0"].layers == (0, 1) and found["sefa-0"].provenance["source"] == "generator"
    assert found["sefa-0"].provenance["eigenvalue"] >= found["sefa-1"].provenance["eigenvalue"]
    assert found["ganspace-store-0"].provenance["source"] == "store"
    assert found["ganspace-0"].provenance["num_samples"] == 2000 and found["ganspace-0"].scale > 0


def test_render_edits_on_a_process_cluster_writes_grids_and_ws_equal_to_apply_then_resumes(
        prefect_harness, dask_cluster, store, edit_world):
    from flows.discover_directions import discover_directions
    from flows.fit_boundaries import fit_boundaries
    from flows.render_edits import render_edits

    fit_boundaries(store, FitBoundariesConfig(attributes=("a",)))
    discover_directions(store, DiscoverDirectionsConfig(methods=("sefa",), num_directions=1))
    strengths = [-2.0, 0.0, 2.0]
    config = RenderEditsConfig(directions=("interfacegan-a", "sefa-0"), items="a == 0", limit=6,
                               strengths=tuple(strengths), run="smile", batch_size=4)
    on_cluster = ExecutionOptions(cluster=dask_cluster[0].scheduler_address)
    summary = render_edits(store, config, on_cluster)
    assert summary.items == 6 and summary.batches_rendered == 2
    s = LatentStore.open(store)
    run = EditRun.open(s, "smile")
    ds = run.to_xarray()
    num_ws, w_dim = s.layout.num_ws, s.layout.w_dim
    assert ds["ws"].shape == (6, 2, 3, num_ws, w_dim) and (ds["status"].values == 1).all()
    rows = run.item_indices
    assert (s.array("labels/a")[:][rows] == 0).all()
    base = s.array("ws")[:][rows]
    for name in ("interfacegan-a", "sefa-0"):
        expected = edit.apply(base, read_direction(s, name), strengths)
        np.testing.assert_array_equal(ds["ws"].sel(direction=name).values, expected)
    grids = summary.grids
    assert grids == f"{store}.edits/smile"
    size = edit_world[2].img_resolution
    index = json.loads(open(f"{grids}/index.json").read())
    with Image.open(f"{grids}/sefa-0.png") as grid:  # rows = items, columns = strengths, under their labels
        assert grid.size == (3 * size, index["header_px"] + 6 * size)
        header = np.asarray(grid.convert("L"))[:index["header_px"]]
        inked = [(header[:, k * size:(k + 1) * size] < 128).any() for k in range(3)]
        assert inked == [True, True, True]  # each column's strength is written over it
    assert index["rows"] == run.image_ids and index["columns"] == strengths
    again = render_edits(store, config, on_cluster)
    assert again.batches_rendered == 0  # everything was done: the rerun only re-assembles


@pytest.mark.slow
def test_cli_fits_discovers_lists_and_renders(prefect_harness, dask_cluster, store):
    from cli.app import app

    fitted = runner.invoke(app, ["fit-boundaries", store, "--attributes", "a,b", "--condition", "a=b"])
    assert fitted.exit_code == 0, fitted.output
    assert "interfacegan-a|b" in fitted.output
    discovered = runner.invoke(app, ["discover-directions", store, "--methods", "sefa", "--num-directions", "2"])
    assert discovered.exit_code == 0, discovered.output
    listed = runner.invoke(app, ["list-directions", store])
    assert listed.exit_code == 0 and "interfacegan-a|b" in listed.output and "sefa-1" in listed.output
    assert "val_accuracy" in listed.output and "eigenvalue" in listed.output
    rendered = runner.invoke(app, ["render-edits", store, "--directions", "sefa-1", "--ids", "face001,face002",
                                   "--strengths=-1,0,1", "--run", "cli",
                                   "--cluster", dask_cluster[0].scheduler_address,
                                   "--evaluate-with", "builtin"])
    assert rendered.exit_code == 0, rendered.output
    assert os.path.exists(f"{store}.edits/cli/sefa-1.png")
    evaluation = EditRun.open(LatentStore.open(store), "cli").attrs["evaluation"]
    assert [(r["direction"], r["strength"]) for r in evaluation] == [("sefa-1", -1.0), ("sefa-1", 0.0), ("sefa-1", 1.0)]
    assert evaluation[1]["pixel_change"] == 0 and evaluation[2]["pixel_change"] > 0
    missing = runner.invoke(app, ["render-edits", store, "--directions", "nope"])
    assert missing.exit_code == 2 and "no direction 'nope'" in missing.output
    unknown = runner.invoke(app, ["render-edits", store, "--directions", "sefa-1", "--cluster", "threads"])
    assert unknown.exit_code == 2 and "local-cuda" in unknown.output  # the inversion's cluster names, nothing else
    again = runner.invoke(app, ["fit-boundaries", store, "--attributes", "a"])
    assert again.exit_code == 2 and "--overwrite" in again.output
