"""The resampling implementations of `conv2d_resample` (GANINV_RESAMPLE_IMPL) compute the same function."""

import pytest
import torch

from ganinv.generators import layers
from ganinv.generators.layers import conv2d_resample, modulated_conv2d, setup_filter


@pytest.fixture
def impl(monkeypatch):
    def use(name):
        monkeypatch.setattr(layers, "RESAMPLE_IMPL", name)
    return use


@pytest.mark.parametrize("name", ["separable", "composite", "subpixel"])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("direction", [dict(up=2), dict(down=2)])
def test_every_implementation_matches_the_reference_fir(impl, name, groups, direction):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6 * groups, 9, 9, generator=gen)
    w = torch.randn(4 * groups, 6, 3, 3, generator=gen)
    f = setup_filter()
    impl("fir")
    ref = conv2d_resample(x, w, f, padding=1, groups=groups, **direction)
    impl(name)
    out = conv2d_resample(x, w, f, padding=1, groups=groups, **direction)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_subpixel_upsampling_modulated_conv_keeps_channels_last_and_values(impl, fused):
    gen = torch.Generator().manual_seed(1)
    x, weight, styles = torch.randn(3, 8, 8, 8, generator=gen), torch.randn(5, 8, 3, 3, generator=gen), \
        torch.randn(3, 8, generator=gen)
    kwargs = dict(up=2, padding=1, resample_filter=setup_filter(), fused_modconv=fused)
    impl("fir")
    ref = modulated_conv2d(x, weight, styles, **kwargs)
    impl("subpixel")
    out = modulated_conv2d(x.contiguous(memory_format=torch.channels_last), weight, styles, **kwargs)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
