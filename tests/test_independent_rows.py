"""`invert_batch(independent_rows=True)` on CPU: every image's codes, metrics and thumbnail are bitwise the same in
any batch (alone, two, three, past the 11- and 16-row kernel switches, any order, NHWC or NCHW input)."""

import numpy as np
import pytest
import torch

from ganinv.inversion.batch import invert_batch


@pytest.fixture(scope="module")
def faces64():
    from benchmarks.common import heldout_faces
    from runtime.config import InvertConfig
    from runtime.models import load_models

    spec = InvertConfig(inversion={"num_steps": 2}).resolve("faces64")  # make demo's settings, fewer steps
    models = load_models("faces64", spec.encoder, "cpu")
    return models, spec, heldout_faces(17)


def _invert(faces64, indices, **kwargs):
    models, spec, faces = faces64
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # the store's CPU numerics fix the thread count; 1 is what the demo's workers use
    try:
        batch = invert_batch(models.G, faces[indices], mode=spec.mode, config=spec.config, seeds=indices, E=models.E,
                             thumbnail_size=spec.thumbnail_size, **kwargs)
    finally:
        torch.set_num_threads(saved)
    return {i: (batch.ws[k], batch.thumbnails[k], {name: values[k] for name, values in batch.metrics.items()
                                                   if name != "seconds"}) for k, i in enumerate(indices)}


def _same(a, b) -> bool:
    return (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
            and a[2].keys() == b[2].keys() and all(np.array_equal(a[2][k], b[2][k], equal_nan=True) for k in a[2]))


def test_every_image_gets_the_same_bits_in_any_batch(faces64):
    alone = {**_invert(faces64, [0], independent_rows=True), **_invert(faces64, [1], independent_rows=True)}
    for indices in ([1, 0], [0, 1, 2], [5, 0, 9, 1, 3, 4, 6, 7, 8, 10, 11], list(range(17))[::-1]):
        batch = _invert(faces64, indices, independent_rows=True)
        assert _same(batch[0], alone[0]) and _same(batch[1], alone[1]), f"batch {indices}"


def test_without_independent_rows_a_batch_changes_the_bits(faces64):
    """What the option is for (and the proof that the test above can fail): plain CPU batches round otherwise."""
    alone = _invert(faces64, [0])
    assert not _same(_invert(faces64, [0, 1, 2])[0], alone[0])


def test_channels_last_input_gets_the_bits_of_contiguous_input(faces64):
    models, spec, faces = faces64
    nhwc = faces[[0, 1]].contiguous(memory_format=torch.channels_last)
    nchw = faces[[0, 1]].contiguous()
    out = [invert_batch(models.G, t, mode=spec.mode, config=spec.config, seeds=[0, 1], E=models.E,
                        independent_rows=True).ws for t in (nhwc, nchw)]
    assert np.array_equal(*out)


def test_independent_rows_refuses_degradations_it_does_not_cover(faces64):
    from ganinv.inversion.degradations import Downsample

    models, spec, faces = faces64
    with pytest.raises(ValueError, match="independent_rows"):
        invert_batch(models.G, faces[:1, :, ::4, ::4], mode=spec.mode, config=spec.config, seeds=[0], E=models.E,
                     degradation=Downsample(4), independent_rows=True)


def test_independent_rows_hold_in_the_thread_that_asked_only():
    """A Dask worker may run two shards at once in threads: a per-image store's must keep the plain layers."""
    from concurrent.futures import ThreadPoolExecutor

    from ganinv.generators.layers import independent_rows, rows_independent

    x = torch.zeros(2, 3)
    with independent_rows():
        assert rows_independent(x)
        with ThreadPoolExecutor(1) as pool:
            assert not pool.submit(rows_independent, x).result()
        with independent_rows(False):
            assert not rows_independent(x)
        assert rows_independent(x)
    assert not rows_independent(x)


def test_a_worker_checks_its_kernels_keep_rows_independent_before_it_writes(faces64, monkeypatch):
    """invert_items with independent rows re-inverts a batch's first image alone once per process and recipe; where
    this CPU's kernels would give it other bytes, the shard stops with a WorkerSetupError (nothing is written)."""
    from runtime import shard
    from runtime.errors import WorkerSetupError
    from storage import Layout, Status

    models, spec, faces = faces64
    ids = tuple(f"face{i}" for i in range(3))
    chunks = [dict(rows=[0, 1, 2], target=faces[:3], errors={})]
    layout = Layout(num_ws=models.G.num_ws, w_dim=models.G.w_dim, thumbnail_size=spec.thumbnail_size)
    monkeypatch.setattr(shard, "_ROWS_CHECKED", set())
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result, _ = shard.invert_items(models, spec, ids, iter(chunks), layout=layout, batch_size=3,
                                       independent_rows=True)
        assert len(shard._ROWS_CHECKED) == 1 and (result.status == Status.DONE).all()
        real = shard.invert_batch
        monkeypatch.setattr(shard, "_ROWS_CHECKED", set())  # a machine whose lone image rounds otherwise

        def rounding_otherwise(*args, **kwargs):
            batch = real(*args, **kwargs)
            if len(kwargs["seeds"]) == 1:
                batch.ws[0, 0, 0] = np.nextafter(batch.ws[0, 0, 0], np.inf)
            return batch

        monkeypatch.setattr(shard, "invert_batch", rounding_otherwise)
        with pytest.raises(WorkerSetupError, match="do not keep a batch's rows independent"):
            shard.invert_items(models, spec, ids, iter(chunks), layout=layout, batch_size=3, independent_rows=True)
    finally:
        torch.set_num_threads(saved)
