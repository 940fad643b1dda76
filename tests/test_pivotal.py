"""Pivotal tuning (ganinv.inversion.pivotal) on tiny seeded generators, CPU: fidelity, locality, independence of the
batch, bit-exact serialisation, edits through the deltas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_generator
from ganinv import edit
from ganinv.generators.layers import SampleDelta, modulated_conv2d, setup_filter
from ganinv.inversion import invert
from ganinv.inversion.pivotal import (
    PivotalConfig, PivotalDeltas, delta_attrs, pack, render, round_deltas, tune, unpack,
)
from ganinv.metrics import reconstruction_metrics

TUNE = dict(loss="mse", num_steps=30, learning_rate=1e-2)


@pytest.fixture(scope="module")
def world():
    """(G, targets, pivots): targets from another generator with random noise (not reachable by G), pivots from a
    short W+ inversion in G with G's own constant noise."""
    G, other = make_tiny_generator(seed=1), make_tiny_generator(seed=5)
    with torch.no_grad():
        z = torch.randn([4, other.z_dim], generator=torch.Generator().manual_seed(3))
        torch.manual_seed(0)
        targets = other(z, None, noise_mode="random").clamp(-1, 1)
    pivots = invert(G, targets, space="w+", num_steps=30, loss="mse", optimize_noise=False, seed=10).ws
    return G, targets, pivots


@pytest.fixture(scope="module")
def tuned(world):
    G, targets, pivots = world
    return tune(G, targets, pivots, seed=[11, 12, 13, 14], **TUNE)


def _psnr(images, targets):
    return reconstruction_metrics(images, targets)["psnr"]


def test_tuning_improves_every_reconstruction_and_leaves_g_unchanged(world, tuned):
    G, targets, pivots = world
    before = {k: v.clone() for k, v in G.state_dict().items()}
    gain = tuned.metrics["psnr"] - _psnr(render(G, pivots), targets)
    assert (gain > 1.0).all(), gain
    torch.testing.assert_close(tuned.metrics["psnr"], _psnr(tuned.images, targets), rtol=0, atol=0)
    assert tuned.history[-1].sum() < tuned.history[0].sum()
    tune(G, targets[:1], pivots[:1], seed=1, **dict(TUNE, num_steps=2))
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def test_locality_regulariser_keeps_g_prime_close_to_g_away_from_the_pivot():
    """Targets are G's own images with a patch G cannot draw: tuning must add it at the pivot (PTI's case)."""
    G = make_tiny_generator(seed=1)
    with torch.no_grad():
        pivots = G.mapping(torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(3)), None)
        targets = G.synthesis(pivots).clamp(-1, 1)
        targets[:, :, 4:9, 5:10] = torch.tensor([1.0, -1.0, 0.5])[:, None, None]
        far = G.mapping(torch.randn([4, 16, G.z_dim], generator=torch.Generator().manual_seed(9)).flatten(0, 1),
                        None).reshape(4, 16, G.num_ws, G.w_dim)  # 16 random codes per item

    def change(result, ws):
        return (render(G, ws, result.deltas) - render(G, ws)).abs().mean().item()

    free = tune(G, targets, pivots, seed=[1, 2, 3, 4], locality_weight=0.0, **TUNE)
    local = tune(G, targets, pivots, seed=[1, 2, 3, 4], locality_weight=1.0, **TUNE)
    assert change(local, pivots) > 2 * change(local, far)  # G' moved at the pivot, much less far away
    assert change(local, far) < 0.7 * change(free, far)    # and that is the regulariser's doing
    gain = local.metrics["psnr"] - _psnr(render(G, pivots), targets)
    assert (gain > 0).all() and gain.mean() > 1, gain  # while still fitting the patch


def test_an_image_gets_the_same_delta_alone_and_in_a_batch_of_four(world, tuned):
    G, targets, pivots = world
    alone = tune(G, targets[2:3], pivots[2:3], seed=[13], **TUNE)
    in_batch = tuned.deltas.select([2])
    assert alone.deltas.layers.keys() == in_batch.layers.keys()
    for name, delta in alone.deltas.layers.items():
        for part, a, b in zip(("up", "down", "bias"), delta, in_batch.layers[name]):
            # at most one fp16 step apart: batched kernels round ~1e-7 differently, which may cross a rounding edge
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6, msg=f"{name}.{part}")
    torch.testing.assert_close(alone.images, tuned.images[2:3], rtol=0, atol=1e-5)


def test_same_seeds_give_bitwise_the_same_deltas(world, tuned):
    G, targets, pivots = world
    again = tune(G, targets, pivots, seed=[11, 12, 13, 14], **TUNE)
    values, _ = pack(tuned.deltas)
    assert np.array_equal(pack(again.deltas)[0], values)
    other_seed = tune(G, targets[:1], pivots[:1], seed=[99], **TUNE)
    assert not np.array_equal(pack(other_seed.deltas)[0], values[:1])


@pytest.mark.parametrize("storage_dtype, form", [("float16", {}), ("bfloat16", {}), ("float32", {}),
                                                 ("float16", dict(tune_bias=True)),
                                                 ("float16", dict(rank=0, tune_bias=True))])
def test_pack_unpack_round_trip_is_bit_exact_and_renders_the_reported_images(world, storage_dtype, form):
    G, targets, pivots = world
    result = tune(G, targets[:2], pivots[:2], seed=[1, 2], storage_dtype=storage_dtype,
                  **dict(TUNE, num_steps=5, **form))
    values, attrs = pack(result.deltas, config=result.config)
    assert values.shape == (2, result.deltas.values_per_item()) and values.dtype.itemsize * values.shape[1] == \
        result.deltas.bytes_per_item()
    back = unpack(values.copy(), attrs)
    for name, delta in result.deltas.layers.items():
        for a, b in zip(delta, back.layers[name]):
            assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(render(G, result.ws, back), result.images)
    assert PivotalConfig.from_dict(attrs["config"]) == result.config
    assert delta_attrs(G, result.config) == attrs  # known before tuning: a store can create the array up front
    assert np.dtype(attrs["numpy_dtype"]) == values.dtype
    assert attrs["rank"] == result.config.rank and attrs["dtype"] == storage_dtype
    parts = (set() if form.get("rank") == 0 else {"up", "down"}) | ({"bias_delta"} if "tune_bias" in form else set())
    assert {p["part"] for p in attrs["parts"]} == parts


def test_deltas_survive_a_zarr_array_and_its_attributes(world, tuned, tmp_path):
    import json

    import zarr

    values, attrs = pack(tuned.deltas, config=tuned.config)
    array = zarr.create_array(str(tmp_path / "deltas.zarr"), shape=values.shape, chunks=(2, values.shape[1]),
                              dtype=values.dtype, attributes=json.loads(json.dumps(attrs)))
    array[:] = values
    stored = zarr.open_array(str(tmp_path / "deltas.zarr"), mode="r")
    back = unpack(stored[1:3], dict(stored.attrs))
    G = world[0]
    assert torch.equal(render(G, tuned.ws[1:3], back), tuned.images[1:3])


def test_pack_refuses_unrounded_values_and_unpack_refuses_mismatched_attributes(tuned):
    unrounded = PivotalDeltas({name: SampleDelta(*(None if t is None else t + 1e-5 for t in d))
                               for name, d in tuned.deltas.layers.items()}, "float16")
    with pytest.raises(ValueError, match="not exact in float16"):
        pack(unrounded)
    values, attrs = pack(tuned.deltas)
    with pytest.raises(ValueError, match="not pivotal deltas"):
        unpack(values, dict(attrs, format="something-else"))
    with pytest.raises(ValueError, match="rows of"):
        unpack(values[:, :-1], attrs)
    with pytest.raises(ValueError, match="dtype"):
        unpack(values.astype(np.float32), attrs)


def test_rendering_checks_the_deltas_fit_the_generator(world, tuned):
    G, _, pivots = world
    with pytest.raises(ValueError, match="lacks"):
        render(G, pivots, PivotalDeltas({"b1024.conv0": tuned.deltas.layers["b8.conv0"]}))
    with pytest.raises(ValueError, match="need"):
        render(G, pivots[:3], tuned.deltas)
    bigger = make_tiny_generator(seed=1, channel_max=32, channel_base=512)
    with pytest.raises(ValueError, match="b4.conv1.up has shape"):
        render(bigger, pivots, tuned.deltas)


def test_edits_render_through_each_items_delta(world, tuned):
    G = world[0]
    direction = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(4))
    direction = direction / direction.norm()
    strengths = [0.0, -1.0, 2.0]
    edited = edit.apply(tuned.ws, direction, strengths)  # [N, S, num_ws, w_dim]
    images = render(G, edited, tuned.deltas)
    assert images.shape == (4, 3, *tuned.images.shape[1:])
    assert torch.equal(images[:, 0], tuned.images)  # strength 0 is the tuned reconstruction, exactly
    one = render(G, edited[1:2, 2], tuned.deltas.select([1]))
    torch.testing.assert_close(images[1:2, 2], one, rtol=0, atol=1e-5)
    untuned = render(G, edited)
    assert (images - untuned).abs().mean() > 1e-3  # the delta is in every edit


def test_rounding_to_storage_changes_values_by_less_than_its_precision(tuned):
    fp32 = PivotalDeltas(tuned.deltas.layers, "float32")
    assert round_deltas(fp32, "float16").layers["b8.conv1"].up.equal(tuned.deltas.layers["b8.conv1"].up)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_low_rank_modulated_conv_matches_explicit_per_sample_weights(up, demodulate):
    gen = torch.Generator().manual_seed(0)
    n, o, i, r = 3, 6, 5, 2
    x, weight, styles = (torch.randn(s, generator=gen) for s in ([n, i, 8, 8], [o, i, 3, 3], [n, i]))
    delta = SampleDelta(torch.randn([n, o, r], generator=gen), torch.randn([n, r, i, 3, 3], generator=gen))
    kwargs = dict(up=up, padding=1, resample_filter=setup_filter(), demodulate=demodulate)
    explicit = torch.cat([modulated_conv2d(x[k:k + 1], weight + (delta.up[k] @ delta.down[k].reshape(r, -1))
                                           .reshape(o, i, 3, 3), styles[k:k + 1], **kwargs) for k in range(n)])
    for fused in (True, False):
        out = modulated_conv2d(x, weight, styles, delta=delta, fused_modconv=fused, **kwargs)
        torch.testing.assert_close(out, explicit, rtol=1e-5, atol=1e-5)


def test_inputs_are_checked_before_any_work(world):
    G, targets, pivots = world
    with pytest.raises(ValueError, match="pivots"):
        tune(G, targets, pivots[:, :3], **TUNE)
    with pytest.raises(ValueError, match="nothing to tune"):
        PivotalConfig(rank=0, tune_bias=False)
    with pytest.raises(ValueError, match="storage_dtype"):
        PivotalConfig(storage_dtype="int8")
