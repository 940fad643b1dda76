"""Regenerate docs/procedural_faces_grid.png: faces 0..63 of world seed 0 at 64 px.

    PYTHONPATH=. python docs/make_procedural_faces_grid.py
"""
from pathlib import Path

from PIL import Image

from ganinv.datasets.procedural_faces import render_batch

images, _ = render_batch(0, range(64))
grid = images.reshape(8, 8, 64, 64, 3).transpose(0, 2, 1, 3, 4).reshape(512, 512, 3)
out = Path(__file__).with_name("procedural_faces_grid.png")
Image.fromarray(grid).save(out, optimize=True)
print(out)
