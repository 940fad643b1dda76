"""`ganinv store-info`, `store-verify` and `store-break-lease` on a real local store; store-info and
list-directions without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from _store_helpers import GENERATOR, W_DIM, fake_result, location_for, make_manifest
from cli.app import app
from ganinv.directions.direction import Direction
from ganinv.item_metrics import OOD_SCORE
from runtime.ood import score_store
from storage.directions import write_direction

REPO = Path(__file__).resolve().parents[1]

runner = CliRunner()


def test_store_info_summarises_counts_generator_and_lease(tmp_path):
    loc = location_for("local", tmp_path, None)
    store = loc.create(make_manifest(10))
    inputs = store.read_shard_inputs(store.shard(0))
    store.write_shard(inputs, fake_result(inputs, store, fail_every=4))
    store.acquire_lease("nightly-7", ttl_s=600)
    result = runner.invoke(app, ["store-info", loc.url])
    assert result.exit_code == 0, result.output
    assert "done 3, failed 1, pending 6" in result.output
    assert GENERATOR.sha256 in result.output and "nightly-7" in result.output
    as_json = json.loads(runner.invoke(app, ["store-info", loc.url, "--json"]).output)
    assert as_json["counts"] == {"pending": 6, "done": 3, "failed": 1}
    assert as_json["attributes"]["inversion"]["num_steps"] == 10


def test_store_verify_fails_on_damaged_items_and_repair_requeues_them(tmp_path):
    loc = location_for("local", tmp_path, None)
    store = loc.create(make_manifest(8))
    for shard in store.shards():
        inputs = store.read_shard_inputs(shard)
        store.write_shard(inputs, fake_result(inputs, store))
    assert runner.invoke(app, ["store-verify", loc.url]).exit_code == 0
    store.array("ws")[6] = np.nan
    damaged = runner.invoke(app, ["store-verify", loc.url])
    assert damaged.exit_code == 1 and "bad item 6" in damaged.output
    repaired = runner.invoke(app, ["store-verify", loc.url, "--repair"])
    assert repaired.exit_code == 0 and "marked 1 items pending" in repaired.output
    assert loc.open().status_counts()["pending"] == 1


def test_store_break_lease_frees_a_store_and_missing_stores_are_reported(tmp_path):
    loc = location_for("local", tmp_path, None)
    loc.create(make_manifest(4)).acquire_lease("dead-run", ttl_s=600)
    result = runner.invoke(app, ["store-break-lease", loc.url])
    assert result.exit_code == 0 and "dead-run" in result.output
    assert loc.open().lease_holder() is None
    missing = runner.invoke(app, ["store-info", str(tmp_path / "nowhere.zarr")])
    assert missing.exit_code == 2 and "no latent store" in missing.output


# Runs the commands of argv (a JSON list of argument lists) in one fresh process: exit code, output, torch loaded
PROBE = """
import json, sys
from typer.testing import CliRunner
from cli.app import app
results = [[r.exit_code, r.output] for r in (CliRunner().invoke(app, argv) for argv in json.loads(sys.argv[1]))]
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""


def test_store_info_and_list_directions_load_no_torch(tmp_path):
    """Reading a store's summary, its OOD scores and its directions is numpy and zarr: neither command imports torch
    (~2 s of CPU; ganinv.metrics and ganinv.directions loaded it for a type hint and a package's eager imports)."""
    loc = location_for("local", tmp_path, None)
    store = loc.create(make_manifest(8), metrics=("mse", "psnr", OOD_SCORE))
    for shard in store.shards():
        inputs = store.read_shard_inputs(shard)
        store.write_shard(inputs, fake_result(inputs, store))
    assert score_store(store) is not None
    vector = np.zeros(W_DIM, np.float32)
    vector[0] = 1
    write_direction(store, Direction("sefa-0", "sefa", "w", vector, provenance={"eigenvalue": 2.0}),
                    made_by={"flow": "test"})
    store.consolidate()
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps([["store-info", loc.url],
                                                                    ["list-directions", loc.url]])],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    (info_code, info), (listing_code, listing) = probe["results"]
    assert info_code == 0 and "ood score   8 items from mse" in info, info
    assert listing_code == 0 and "sefa-0" in listing and "eigenvalue 2" in listing, listing
    assert probe["torch"] is False
