"""GANSpace PCA against scikit-learn, incremental against full, and batched sampling from a tiny generator."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from ganinv.directions import ganspace
from ganinv.directions.ganspace import directions_from_pca, pca, sample_w


def anisotropic(num=3000, dim=12, seed=0):
    """Data with well-separated variances along a random rotation, so components are well defined."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    scales = 10 * 0.7 ** np.arange(dim)
    return (rng.normal(size=(num, dim)) * scales) @ basis.T + rng.normal(size=dim)


def assert_same_up_to_sign(a, b, atol):
    signs = np.sign(np.sum(a * b, axis=1, keepdims=True))
    np.testing.assert_allclose(a, b * signs, atol=atol)


def test_full_pca_matches_scikit_learn():
    x = anisotropic()
    result = pca(x, 5, method="full")
    reference = PCA(5).fit(x)
    assert result.components.shape == (5, 12) and result.stdev.shape == (5,) and result.mean.shape == (12,)
    assert_same_up_to_sign(result.components, reference.components_, atol=1e-5)
    np.testing.assert_allclose(result.stdev, np.sqrt(reference.explained_variance_), rtol=1e-5)
    np.testing.assert_allclose(result.mean, reference.mean_, atol=1e-5)
    np.testing.assert_allclose(result.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-5)
    assert result.num_samples == 3000


def test_components_are_unit_rows_sorted_by_stdev_with_a_fixed_sign():
    result = pca(anisotropic(), 6, method="full")
    np.testing.assert_allclose(np.linalg.norm(result.components, axis=1), 1, atol=1e-6)
    assert np.all(np.diff(result.stdev) < 0)
    peaks = result.components[np.arange(6), np.abs(result.components).argmax(axis=1)]
    assert np.all(peaks > 0)


def test_incremental_agrees_with_full():
    x = anisotropic()
    full = pca(x, 4, method="full")
    incremental = pca(x, 4, method="incremental", chunk_size=500)
    # IncrementalPCA keeps only n_components between chunks, so it is close, not exact; same sign convention.
    assert np.all(np.sum(incremental.components * full.components, axis=1) > 0.9999)
    np.testing.assert_allclose(incremental.stdev, full.stdev, rtol=1e-3)
    np.testing.assert_allclose(incremental.mean, full.mean, atol=1e-6)


def test_incremental_on_uneven_batches_equals_incremental_on_the_array():
    x = anisotropic(num=2500)
    cuts = [0, 7, 700, 701, 1900, 2500]
    from_batches = pca((torch.from_numpy(x[a:b]) for a, b in zip(cuts, cuts[1:])), 4, chunk_size=600)
    from_array = pca(x, 4, chunk_size=600)
    np.testing.assert_allclose(from_batches.components, from_array.components, atol=1e-6)
    np.testing.assert_allclose(from_batches.stdev, from_array.stdev, rtol=1e-6)
    assert from_batches.num_samples == 2500


@pytest.mark.parametrize("sizes, chunk", [([7, 700, 1, 1199, 600], 600), ([100], 600), ([600, 600], 600)])
def test_rechunk_gives_full_chunks_and_one_remainder_below_twice_the_size(sizes, chunk):
    x = np.arange(sum(sizes), dtype=float)[:, None]
    batches = np.split(x, np.cumsum(sizes)[:-1])
    chunks = list(ganspace._rechunk(iter(batches), chunk))
    np.testing.assert_array_equal(np.concatenate(chunks), x)
    assert all(len(c) == chunk for c in chunks[:-1])
    assert len(chunks[-1]) < 2 * chunk


def test_sample_w_streams_batches_independent_of_batch_size(family_generator):
    a = list(sample_w(family_generator, 50, seed=3, batch_size=16))
    b = np.concatenate(list(sample_w(family_generator, 50, seed=3, batch_size=50)))
    assert [len(batch) for batch in a] == [16, 16, 16, 2]
    np.testing.assert_allclose(np.concatenate(a), b, atol=1e-6)


def test_discover_on_a_generator_gives_unit_directions_scaled_by_stdev(family_generator):
    directions = ganspace.discover(family_generator, num_directions=4, num_samples=3000, batch_size=1000,
                                   layers=[0, 1, 2], provenance=dict(generator="tiny"))
    reference = pca(np.concatenate(list(sample_w(family_generator, 3000))), 4, method="full")
    assert [d.name for d in directions] == [f"ganspace-{k}" for k in range(4)]
    for k, d in enumerate(directions):
        assert d.method == "ganspace" and d.space == "w" and d.layers == (0, 1, 2)
        assert d.scale == pytest.approx(float(reference.stdev[k]), rel=1e-2)
        assert float(np.abs(d.vector @ reference.components[k])) > 0.999
        assert d.provenance["num_samples"] == 3000 and d.provenance["generator"] == "tiny"
        assert d.provenance["component"] == k and d.provenance["source"] == "samples"


def test_directions_from_pca_records_store_source():
    result = pca(anisotropic(), 2, method="full")
    directions = directions_from_pca(result, source="store", name_prefix="corpus")
    assert [d.name for d in directions] == ["corpus-0", "corpus-1"]
    assert directions[0].provenance["source"] == "store"
    assert directions[1].provenance["explained_variance_ratio"] == pytest.approx(
        float(result.explained_variance_ratio[1]))


def test_bad_input_is_rejected():
    x = anisotropic(num=50)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        pca(x.reshape(50, 3, 4), 2)
    with pytest.raises(ValueError, match="one \\[N, D\\] array"):
        pca(iter([x]), 2, method="full")
    with pytest.raises(ValueError, match="at least"):
        pca(x[:3], 5, method="full")
    with pytest.raises(ValueError, match="method"):
        pca(x, 2, method="sparse")
