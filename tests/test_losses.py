"""Losses by name: pixel losses, LPIPS (offline error and real plumbing with random trunk files), the classifier
perceptual loss against a stand-in classifier, combinations and the noise regulariser."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ganinv.losses import (
    ClassifierPerceptualLoss, LPIPSLoss, PerceptualWeightsMissing, PixelL1, PixelMSE, WeightedLoss, build_loss,
    noise_regularization, parse_loss_spec, trunk_weights_path,
)
from ganinv.losses import registry
from ganinv.losses.lpips_distance import area_downsample

from _fresh_process import fresh_python


class StandInClassifier(nn.Module):
    """Same interface as ganinv.models.attributes' classifier: `features(img) -> list of multi-scale maps`."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def features(self, img):
        f1 = torch.relu(self.conv1(img))
        return [f1, torch.relu(self.conv2(f1))]


def images(n=3, res=32, seed=0):
    return torch.rand([n, 3, res, res], generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(registry, "_CACHE", {})
    return tmp_path


def write_random_trunk(net: str) -> Path:
    """A random-weight file where torchvision expects the ImageNet trunk (classifier weights stored as one
    broadcast value to keep the file small): proves the plumbing, is not LPIPS."""
    from torchvision import models

    model = {"alex": models.alexnet, "vgg": models.vgg16}[net](weights=None)
    state = {k: v if k.startswith("features") else torch.zeros(1).expand_as(v) for k, v in model.state_dict().items()}
    path = trunk_weights_path(net)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_loss_specs_parse_with_weights_and_lists():
    assert parse_loss_spec("lpips-vgg+0.1*mse") == ((1.0, "lpips-vgg"), (0.1, "mse"))
    assert parse_loss_spec(["l1", "2*mse"]) == ((1.0, "l1"), (2.0, "mse"))
    with pytest.raises(ValueError, match="clf-perceptual"):
        parse_loss_spec("lpips-squeeze")


def test_pixel_losses_are_per_image_means():
    x, y = images(seed=1), images(seed=2)
    torch.testing.assert_close(PixelMSE()(x, y), ((x - y) ** 2).flatten(1).mean(1))
    torch.testing.assert_close(PixelL1()(x, y), (x - y).abs().flatten(1).mean(1))


def test_combined_loss_is_the_weighted_sum_of_its_terms():
    x, y = images(seed=1), images(seed=2)
    loss = build_loss("l1+0.5*mse")
    assert isinstance(loss, WeightedLoss) and loss.name == "l1+0.5*mse"
    torch.testing.assert_close(loss(x, loss.prepare(y)), PixelL1()(x, y) + 0.5 * PixelMSE()(x, y))


def test_built_losses_are_cached_per_process():
    assert build_loss("mse+l1") is build_loss(["mse", "1*l1"])


@pytest.mark.parametrize("net, filename", [("vgg", "vgg16-397923af.pth"), ("alex", "alexnet-owt-7be5be79.pth")])
def test_missing_lpips_trunk_names_file_folder_and_offline_loss(empty_torch_home, net, filename):
    with pytest.raises(PerceptualWeightsMissing) as info:
        build_loss(f"lpips-{net}")
    message = str(info.value)
    assert filename in message and str(empty_torch_home / "hub" / "checkpoints") in message
    assert "clf-perceptual" in message and "TORCH_HOME" in message


def test_the_trunk_files_are_those_torchvision_loads():
    """The URLs are spelt out (no torchvision import to ask if a trunk is on disk): they must stay torchvision's."""
    from torchvision import models

    from ganinv.losses.lpips_distance import TRUNK_URLS

    assert TRUNK_URLS == {"vgg": models.VGG16_Weights.IMAGENET1K_V1.url,
                          "alex": models.AlexNet_Weights.IMAGENET1K_V1.url}


def test_asking_for_the_trunk_file_imports_no_torchvision():
    """The flow's settings check asks where the trunk file is: that costs no torchvision import (~1.3 s of CPU)."""
    code = ("import sys; from ganinv.losses.lpips_distance import trunk_weights_path; trunk_weights_path('vgg'); "
            "print('torchvision' in sys.modules)")
    assert fresh_python(code).strip() == "False"


def test_lpips_with_trunk_file_present_matches_the_lpips_package(empty_torch_home):
    import lpips

    write_random_trunk("alex")
    ours = build_loss("lpips-alex")
    reference = lpips.LPIPS(net="alex", verbose=False)
    x, y = images(seed=1), images(seed=2)
    expected = reference(x, y).flatten()
    torch.testing.assert_close(ours(x, ours.prepare(y)), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours(x[1:2], ours.prepare(y[1:2])), expected[1:2], rtol=1e-4, atol=1e-6)
    assert (ours(y, ours.prepare(y)) == 0).all()


def test_metrics_report_lpips_once_its_trunk_file_is_present(empty_torch_home):
    from ganinv.metrics import available_lpips

    assert available_lpips(net="alex") == {}
    write_random_trunk("alex")
    assert list(available_lpips(net="alex")) == ["lpips-alex"]


def test_random_trunk_lpips_is_never_named_lpips():
    assert LPIPSLoss("alex", random_trunk=True).name == "alex-random-trunk"


def test_images_above_256_px_are_area_downsampled():
    x = torch.rand(1, 3, 512, 512)
    torch.testing.assert_close(area_downsample(x), torch.nn.functional.avg_pool2d(x, 2))
    assert area_downsample(x[..., :256, :256]).shape[-1] == 256


def test_classifier_perceptual_is_zero_on_equal_images_and_per_image():
    loss = ClassifierPerceptualLoss(StandInClassifier())
    x, y = images(seed=1), images(seed=2)
    batch = loss(x, loss.prepare(y))
    assert batch.shape == (3,) and (batch > 0).all()
    torch.testing.assert_close(loss(x[2:], loss.prepare(y[2:])), batch[2:])
    assert (loss(y, loss.prepare(y)) == 0).all()


def test_classifier_perceptual_ignores_feature_scale():
    x, y = images(seed=1), images(seed=2)
    net = StandInClassifier()
    loss = ClassifierPerceptualLoss(net)
    before = loss(x, loss.prepare(y))
    with torch.no_grad():  # relu is positively homogeneous: this scales the second feature map by 3
        net.conv2.weight.mul_(3.0)
        net.conv2.bias.mul_(3.0)
    torch.testing.assert_close(loss(x, loss.prepare(y)), before)


def test_builtin_classifier_perceptual_compares_larger_images_at_the_classifiers_64_px():
    # the classifier area-resizes inside `features`: the one resize
    loss = ClassifierPerceptualLoss.from_classifier("builtin")
    x, y = images(res=128, seed=1), images(res=128, seed=2)
    x64, y64 = area_downsample(x, 64), area_downsample(y, 64)
    torch.testing.assert_close(loss(x, loss.prepare(y)), loss(x64, loss.prepare(y64)))


def test_classifier_perceptual_refuses_modules_without_features():
    with pytest.raises(TypeError, match="features"):
        ClassifierPerceptualLoss(nn.Linear(2, 2))


def test_builtin_classifier_missing_says_what_is_needed(monkeypatch):
    monkeypatch.setitem(sys.modules, "ganinv.models.attributes", None)
    monkeypatch.setattr(registry, "_CACHE", {})
    with pytest.raises(ImportError, match="attribute classifier"):
        build_loss("clf-perceptual")


def test_noise_regularisation_is_per_image_and_punishes_smooth_noise():
    white = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(white[..., :8, :8], size=32, mode="bilinear")
    smooth = (smooth - smooth.mean()) / smooth.std()
    batch = noise_regularization([torch.cat([white, smooth]), torch.cat([white[..., :4, :4], smooth[..., :4, :4]])])
    singles = torch.cat([noise_regularization([white, white[..., :4, :4]]),
                         noise_regularization([smooth, smooth[..., :4, :4]])])
    torch.testing.assert_close(batch, singles)
    assert batch[1] > 10 * batch[0]


@pytest.mark.parametrize("name", ["mse", "l1", "lpips-alex", "clf-perceptual"])
def test_inversion_lowers_each_loss(empty_torch_home, name):
    from conftest import make_tiny_generator
    from ganinv.inversion import invert

    G = make_tiny_generator(resolution=32, seed=2)
    with torch.no_grad():
        target = G(torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(3)), None).clamp(-1, 1)
    if name == "lpips-alex":
        write_random_trunk("alex")
    loss_fn = ClassifierPerceptualLoss(StandInClassifier()) if name == "clf-perceptual" else None
    run = dict(loss=name, loss_fn=loss_fn, w_avg_samples=200, space="w+", regularize_noise_weight=0)
    start = invert(G, target, num_steps=1, **run)
    end = invert(G, target, num_steps=40, **run)
    assert (end.losses < 0.9 * start.losses).all(), (start.losses, end.losses)
    assert name in end.metrics or name in ("mse", "l1")


def test_a_clf_perceptual_spec_reads_the_classifier_it_is_given():
    """`build_loss(classifier=)`: a world's own classifier file, not the built-in one, and each cached apart."""
    world2 = Path(__file__).resolve().parents[1] / "training" / "faces64v2" / "classifier.safetensors"
    x, y = images(res=64, seed=1), images(res=64, seed=2)
    builtin = registry.build_loss("clf-perceptual+0.5*mse")
    own = registry.build_loss("clf-perceptual+0.5*mse", classifier=str(world2))
    assert own is not builtin and own is registry.build_loss("clf-perceptual + 0.5*mse", classifier=str(world2))
    mse = 0.5 * ((x - y) ** 2).mean(dim=(1, 2, 3))
    direct = ClassifierPerceptualLoss.from_classifier(str(world2))
    torch.testing.assert_close(own(x, own.prepare(y)), direct(x, direct.prepare(y)) + mse)
    assert not torch.allclose(own(x, own.prepare(y)), builtin(x, builtin.prepare(y)))
