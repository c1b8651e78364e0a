"""The built-in ``sample`` set: scikit-image's bundled colour photos, cut into tiles.

Seven photos cannot fill a batch, so each is cut into a 3x3 grid of tiles. It is a smoke
test of the whole pipeline, not a benchmark.
"""
from __future__ import annotations

from PIL import Image

TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field")
VAL_PHOTOS = ("chelsea", "coffee")
GRID = 3


def _photo(name: str):
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(data, name)()


def _tiles(name: str) -> list[tuple[str, Image.Image]]:
    img = Image.fromarray(_photo(name)).convert("RGB")
    w, h = img.size
    tw, th = w // GRID, h // GRID
    return [
        (f"{name}_{r}{c}", img.crop((c * tw, r * th, (c + 1) * tw, (r + 1) * th)))
        for r in range(GRID)
        for c in range(GRID)
    ]


def sample_split(photos: tuple[str, ...]) -> list[tuple[str, Image.Image]]:
    return [tile for name in photos for tile in _tiles(name)]
