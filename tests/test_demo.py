"""`make demo` (flows/demo.py) end to end at a small size: held-out faces, then the inversion flow into a store."""

from __future__ import annotations

import numpy as np
import pytest

from storage import LatentStore


@pytest.mark.slow
def test_demo_stages_make_images_and_a_complete_store(prefect_harness, dask_cluster, tmp_path, monkeypatch):
    from flows import demo

    for name in ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "DASK_LOGGING__DISTRIBUTED"):
        monkeypatch.setenv(name, "INFO")  # main() sets quiet defaults for its process; keep this one's
    config = demo.DemoConfig(out=tmp_path / "demo", num_images=4, steps=1, shard_size=2, batch_size=2,
                             cluster=dask_cluster[0].scheduler_address)
    ctx = demo.main(config)
    assert [stage.name for stage in demo.STAGES][:2] == ["data", "invert"]
    assert len(list((config.images / "images").glob("*.png"))) == 4
    store = LatentStore.open(str(config.store))
    assert store.status_counts() == {"pending": 0, "done": 4, "failed": 0}
    assert store.attributes.inversion["mode"] == "hybrid" and "smiling" in store.layout.labels
    assert np.isfinite(store.array("labels/smiling")[:]).all()  # labels came from attributes.csv
    again = demo.main(config)  # re-running finds everything done
    assert again.results["invert"]["summary"].this_run.items == 0
    assert ctx.results["invert"]["summary"].this_run.items == 4
