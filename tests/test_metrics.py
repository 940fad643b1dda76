"""Per-image reconstruction metrics and the Fréchet distance."""

import numpy as np
import pytest
import torch

from ganinv.losses import PixelL1
from ganinv.metrics import feature_statistics, frechet_distance, reconstruction_metrics

from _fresh_process import fresh_python


def images(n=3, res=16, seed=0):
    return torch.rand([n, 3, res, res], generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


def test_identical_images_score_perfectly():
    x = images()
    m = reconstruction_metrics(x, x)
    assert (m["mse"] == 0).all() and (m["psnr"] >= 100).all()
    torch.testing.assert_close(m["ssim"], torch.ones(3))


def test_psnr_is_computed_on_unit_range_images():
    x = images()
    m = reconstruction_metrics(x + 0.2, x)  # 0.2 in [-1, 1] is 0.1 in [0, 1]: mse 0.01, psnr 20 dB
    torch.testing.assert_close(m["mse"], torch.full([3], 0.01))
    torch.testing.assert_close(m["psnr"], torch.full([3], 20.0))


def test_metrics_of_a_batch_are_those_of_each_image():
    x, y = images(seed=1), images(seed=2)
    batch = reconstruction_metrics(x, y, perceptual={"l1": PixelL1()})
    single = reconstruction_metrics(x[1:2], y[1:2], perceptual={"l1": PixelL1()})
    assert set(batch) == {"mse", "psnr", "ssim", "l1"}
    for key in batch:
        torch.testing.assert_close(batch[key][1:2], single[key])
    assert (batch["ssim"] < 0.5).all()


def test_ssim_works_on_images_smaller_than_its_window():
    x = images(res=8)
    assert reconstruction_metrics(x, x.flip(-1))["ssim"].shape == (3,)


def test_importing_the_metrics_imports_no_torchmetrics():
    """torchmetrics (all of it, ~2.5 s of CPU) is imported by the first SSIM, not by processes that only import the
    metrics or a worker's modules."""
    code = ("import sys, ganinv.metrics, runtime.shard; "
            "print(sorted({'torchmetrics', 'torchvision'} & set(sys.modules)))")
    assert fresh_python(code).strip() == "[]"


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, 3.0])
    var1, var2 = np.array([1.0, 4.0]), np.array([4.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_frechet_distance_of_a_sample_with_itself_is_zero():
    feats = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    mu, sigma = feature_statistics(feats)
    assert mu.shape == (5,) and sigma.shape == (5, 5)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(feats[:1])


def test_lpips_is_reported_only_when_its_trunk_is_on_disk(tmp_path, monkeypatch):
    from ganinv.metrics import available_lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert available_lpips() == {}
