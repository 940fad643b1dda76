"""Images from seeds as the official `gen_images.py` draws them: z, class labels, StyleGAN3's translate/rotate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_sg3_tiny, make_tiny_generator, make_tiny_sg3_generator, sg3_tiny_reference
from ganinv.generate import class_labels, generate_images, seed_latents
from ganinv.generators.stylegan3 import user_transform


def test_seed_latents_are_numpy_randomstate_normals():
    z = seed_latents([0, 7, 123], 16)
    assert z.dtype == torch.float32 and z.shape == (3, 16)
    for row, seed in zip(z, [0, 7, 123]):
        np.testing.assert_array_equal(row.numpy(), np.random.RandomState(seed).randn(1, 16)[0].astype(np.float32))


@pytest.mark.parametrize("make", [make_tiny_generator, make_tiny_sg3_generator])
def test_each_image_is_its_seeds_alone_whatever_the_batch(make):
    G = make()
    images = generate_images(G, [3, 1, 4, 1, 5], truncation_psi=0.7, batch_size=2)
    for image, seed in zip(images, [3, 1, 4, 1, 5]):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))  # float64, as gen_images.py passes it
        with torch.no_grad():
            torch.testing.assert_close(image[None], G(z, None, truncation_psi=0.7), atol=1e-5, rtol=0)


def test_translate_and_rotate_move_the_stylegan3_input_grid_as_gen_images_does():
    G = load_sg3_tiny("t32")
    ref = sg3_tiny_reference("t32")
    seeds = [11, 12]
    moved = generate_images(G, seeds, translate=(0.1, -0.05), rotate=10)
    with torch.no_grad():
        ws = G.mapping(seed_latents(seeds, G.z_dim), None)
        expected = G.synthesis(ws, transform=ref["transform"])  # the fixture's gen_images.py transform
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(moved, generate_images(G, seeds), atol=1e-2)


def test_a_transform_stored_in_the_generator_is_replaced_as_gen_images_replaces_it():
    G = load_sg3_tiny("r32")
    plain = generate_images(G, [5])
    G.synthesis.input.transform.copy_(user_transform(rotate=30))
    torch.testing.assert_close(generate_images(G, [5]), plain)


def test_translate_on_a_generator_without_an_input_grid_is_refused():
    with pytest.raises(ValueError, match="StyleGAN3 generator's input grid; this generator is stylegan2"):
        generate_images(make_tiny_generator(), [0], rotate=5)


def test_conditional_generator_needs_a_class_index():
    assert class_labels(0, 2, None).shape == (2, 0)
    torch.testing.assert_close(class_labels(3, 2, 1), torch.tensor([[0.0, 1.0, 0.0]] * 2))
    with pytest.raises(ValueError, match="between 0 and 2"):
        class_labels(3, 2, None)
    G = make_tiny_generator(c_dim=3)
    assert generate_images(G, [0, 1], class_idx=2).shape == (2, 3, 16, 16)
