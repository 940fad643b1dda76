"""Directions and edit runs in the latent store (no Prefect): round trips, layout, item selection, resumption."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ganinv import edit
from ganinv.directions.direction import Direction
from storage import LatentStore, LeaseHeldError
from storage.directions import (DirectionNotFoundError, labelled_codes, list_directions, read_direction,
                                read_directions, write_directions)
from storage.edits import EditRun, EditRunExistsError, grids_url, select_items


@pytest.fixture
def store(edit_store):
    """A fresh copy of the session's tiny edit store per test (conftest's `edit_store`), open for writing."""
    return LatentStore.open(edit_store, "r+")


def unit(vector):
    vector = np.asarray(vector, np.float64)
    return vector / np.linalg.norm(vector)


def directions_for(store):
    rng = np.random.default_rng(0)
    num_ws, w_dim = store.layout.num_ws, store.layout.w_dim
    return [Direction(name="interfacegan-a|b", method="interfacegan", space="w", vector=unit(rng.normal(size=w_dim)),
                      scale=0.7, provenance=dict(attribute="a", conditions=["b"], val_accuracy=0.93, source="store")),
            Direction(name="sefa-0", method="sefa", space="w", vector=unit(rng.normal(size=w_dim)), layers=(0, 1),
                      provenance=dict(eigenvalue=3.5, source="generator")),
            Direction(name="wplus", method="interfacegan", space="w+",
                      vector=unit(rng.normal(size=(num_ws, w_dim))), provenance=dict(source="samples"))]


def test_directions_round_trip_with_vector_layers_scale_and_provenance(store):
    written = directions_for(store)
    made_by = dict(flow="test", method="mixed", generator={"sha256": store.attributes.generator.sha256})
    assert write_directions(store, written, made_by=made_by) == [d.name for d in written]
    again = LatentStore.open(store.url)
    read = {d.name: d for d in read_directions(again)}
    assert sorted(read) == sorted(d.name for d in written)
    for d in written:
        r = read[d.name]
        np.testing.assert_array_equal(r.vector, d.vector)
        assert (r.method, r.space, r.layers, r.scale, r.provenance) == (d.method, d.space, d.layers, d.scale,
                                                                          d.provenance)
    listed = list_directions(again)
    assert listed["sefa-0"]["made_by"] == made_by and listed["sefa-0"]["direction"]["layers"] == [0, 1]
    assert listed["wplus"]["store_manifest_hash"] == store.attributes.dataset.manifest_hash
    group = xr.open_zarr(store.url, group="directions/wplus", consolidated=False)
    assert group["vector"].dims == ("layer", "channel")
    with pytest.raises(DirectionNotFoundError, match="no direction 'nope'.*sefa-0"):
        read_direction(again, "nope")


def test_a_direction_of_another_generator_is_refused(store):
    wrong = Direction(name="x", method="sefa", space="w", vector=unit(np.ones(store.layout.w_dim + 1)))
    with pytest.raises(ValueError, match="another generator"):
        write_directions(store, [wrong], made_by={"flow": "test"})


def test_labelled_codes_are_the_done_items_with_their_labels(store):
    store.array("status")[3] = 2  # failed: left out
    store.array("labels/a")[5] = np.nan  # missing one label: kept, NaN
    rows, codes, labels = labelled_codes(store, ["a", "c"])
    assert 3 not in rows and len(rows) == store.num_items - 1
    ws = store.array("ws")[:]
    np.testing.assert_allclose(codes, ws[rows].mean(axis=1), rtol=1e-6)
    assert np.isnan(labels["a"][list(rows).index(5)]) and np.isfinite(labels["c"]).all()
    with pytest.raises(KeyError, match="smile"):
        labelled_codes(store, ["smile"])


def test_select_items_by_label_query_ids_and_limit(store):
    a = store.array("labels/a")[:]
    store.array("status")[0] = 0  # pending: never selected
    rows = select_items(store, "a == 1 and c == 0")
    expected = [i for i in range(1, store.num_items) if a[i] == 1 and store.array("labels/c")[i] == 0]
    assert rows.tolist() == expected
    assert select_items(store, ["face007", "face002"]).tolist() == [2, 7]
    assert select_items(store, None, limit=3).tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="labels are \\['a', 'b', 'c'\\]"):
        select_items(store, "smile == 1")
    with pytest.raises(ValueError, match="not inverted yet"):
        select_items(store, ["face000"])
    with pytest.raises(KeyError, match="nobody"):
        select_items(store, ["nobody"])


def test_edit_run_holds_codes_equal_to_apply_and_reads_as_xarray(store):
    chosen = directions_for(store)
    rows, strengths = np.array([1, 4, 9, 10, 30]), [-2.0, 0.0, 1.5]
    run = EditRun.create(store, "demo", item_indices=rows, directions=chosen, strengths=strengths,
                         made_by={"flow": "test"}, batch_size=2)
    assert run.batches() == [(0, 2), (2, 4), (4, 5)] and run.pending_batches() == run.batches()
    for start, stop in run.batches()[:2]:
        run.write(start, stop, run.edit(start, stop))
    assert run.pending_batches() == [(4, 5)]  # a rerun resumes here
    base = store.array("ws")[:][rows]
    ds = EditRun.open(LatentStore.open(store.url), "demo").to_xarray()
    assert ds["ws"].dims == ("edit_item", "direction", "strength", "layer", "channel")
    assert ds["ws"].shape == (5, 3, 3, store.layout.num_ws, store.layout.w_dim)
    for d in chosen:
        expected = edit.apply(base, d, strengths)  # [items, strengths, num_ws, w_dim]
        got = ds["ws"].sel(direction=d.name).values
        np.testing.assert_array_equal(got[:4], expected[:4])
        assert np.isnan(got[4]).all()  # not rendered yet
    assert int(ds.sel(image_id="face004")["item_index"]) == 4
    assert list(ds["strength"].values) == strengths and ds["status"].values.tolist() == [1, 1, 1, 1, 0]


def test_edit_run_resumes_with_the_same_content_and_refuses_other_content(store):
    chosen = directions_for(store)[:1]
    args = dict(item_indices=np.arange(4), directions=chosen, made_by={"flow": "test"}, batch_size=2)
    first = EditRun.create(store, "r1", strengths=[1.0], **args)
    first.write(0, 2, first.edit(0, 2))
    assert EditRun.create(store, "r1", strengths=[1.0], **args).pending_batches() == [(2, 4)]
    with pytest.raises(EditRunExistsError, match="overwrite"):
        EditRun.create(store, "r1", strengths=[2.0], **args)
    replaced = EditRun.create(store, "r1", strengths=[2.0], overwrite=True, **args)
    assert replaced.pending_batches() == [(0, 2), (2, 4)] and replaced.strengths.tolist() == [2.0]
    with pytest.raises(ValueError, match="Z"):
        EditRun.create(store, "z", strengths=[1.0], **{**args, "directions": [
            Direction(name="z", method="sefa", space="z", vector=unit(np.ones(4)))]})


def test_edit_run_attributes_are_added_by_the_coordinator_and_refused_while_another_run_holds_the_lease(store):
    run = EditRun.create(store, "scored", item_indices=np.arange(2), directions=directions_for(store)[:1],
                         strengths=[1.0], made_by={"flow": "test"})
    run.set_attrs(evaluation=[{"direction": "interfacegan-a|b", "flip_rate": 0.5}])
    again = EditRun.open(LatentStore.open(store.url), "scored").attrs
    assert again["evaluation"] == [{"direction": "interfacegan-a|b", "flip_rate": 0.5}]
    assert again["made_by"] == {"flow": "test"}  # added to, not replaced
    LatentStore.open(store.url, "r+").acquire_lease("other-run", ttl_s=600)
    with pytest.raises(LeaseHeldError, match="other-run"):
        run.set_attrs(evaluation=[])


def test_grids_go_beside_the_store():
    assert grids_url("/data/corpus.zarr/", "smile") == "/data/corpus.zarr.edits/smile"
    assert grids_url("s3://bucket/corpus.zarr", "r") == "s3://bucket/corpus.zarr.edits/r"
