"""Real H&E tiles with expert nucleus masks, read at run time for the benchmarks (never committed).

Data: the 14 images of the MoNuSeg 2018 test set (H&E, 40x, 1000² pixels,
seven organs, from TCGA; hand-contoured nuclei; Kumar et al., IEEE TMI 2020),
licence CC BY-NC-SA 4.0, as redistributed with binary masks in the
``mini_test`` folder of the GitHub repository
``sarah-antillia/Tiled-ImageMask-Dataset-MoNuSeg`` (images and masks are
JPEG; a mask is foreground where it is brighter than 127).

``root`` is a checkout of that repository (or any folder holding
``mini_test/images`` and ``mini_test/masks``), or a bare git directory of it
(a mirror), whose files are then extracted once into ``cache``.  Nothing is
downloaded here: the benchmarks run without network.

Each 1000² image gives four 512² tiles (its corners; neighbours overlap by
24 pixels).  Images, not tiles, are split, so no test tile shares tissue
with a training tile:

* ``train``: five images, 20 tiles, ordered so that the first ``n`` tiles
  come from as many images as possible (tile ``k`` is a corner of image
  ``k mod 5``);
* ``val``: two images, 8 tiles (for benchmarks that want a separate
  validation set; the CLI's own split is used by default);
* ``test``: seven images, 28 tiles, the reported held-out set.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Where the benchmarks look when no path is given (a mirror of the repository named above).
DEFAULT_ROOT = os.environ.get("NAPARI_AUTOSAM_HE_DATA",
                              "/work/.mirror/sarah-antillia+Tiled-ImageMask-Dataset-MoNuSeg/repo")
TILE = 512
#: Image order of the split (sorted stems, shuffled once with seed 0): first 5 train, next 2 val, last 7 test.
N_TRAIN_IMAGES, N_VAL_IMAGES = 5, 2


@dataclass
class Tile:
    name: str
    image: np.ndarray  # 512×512×3 uint8
    mask: np.ndarray  # 512×512 bool


@dataclass
class HESplit:
    train: list[Tile]
    val: list[Tile]
    test: list[Tile]


def _folder(root: Path, cache: Path) -> Path:
    """A folder holding ``mini_test/``: ``root`` itself, or ``cache`` filled from a bare git directory."""
    if (root / "mini_test" / "images").is_dir():
        return root
    if not (root / "HEAD").is_file():
        raise SystemExit(f"no MoNuSeg mini_test under {root}: give a checkout or mirror of "
                         "sarah-antillia/Tiled-ImageMask-Dataset-MoNuSeg (see benchmarks/he_data.py)")
    if not (cache / "mini_test" / "images").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", f"--git-dir={root}", "archive", "HEAD", "mini_test"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "x", "-C", str(cache)], input=archive, check=True)
    return cache


def _corners(array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    h, w = array.shape[:2]
    return [(f"{y},{x}", array[y:y + TILE, x:x + TILE]) for y in (0, h - TILE) for x in (0, w - TILE)]


def load_split(root: str | os.PathLike = DEFAULT_ROOT,
               cache: str | os.PathLike = "/tmp/napari-autosam-bench-data/monuseg") -> HESplit:
    """The train / val / test tiles described in the module docstring."""
    from skimage.io import imread

    folder = _folder(Path(root), Path(cache)) / "mini_test"
    stems = sorted(p.stem for p in (folder / "images").glob("*.jpg"))
    if len(stems) < N_TRAIN_IMAGES + N_VAL_IMAGES + 1:
        raise SystemExit(f"expected the 14 MoNuSeg test images in {folder}, found {len(stems)}")
    order = [stems[i] for i in np.random.default_rng(0).permutation(len(stems))]
    per_image = []
    for stem in order:
        image = imread(folder / "images" / f"{stem}.jpg")[..., :3].astype(np.uint8)
        mask = imread(folder / "masks" / f"{stem}.jpg")
        mask = (mask if mask.ndim == 2 else mask[..., 0]) > 127
        tiles = [Tile(f"{stem}@{pos}", im, m)
                 for (pos, im), (_, m) in zip(_corners(image), _corners(mask))]
        per_image.append(tiles)
    train_images = per_image[:N_TRAIN_IMAGES]
    train = [train_images[k % N_TRAIN_IMAGES][k // N_TRAIN_IMAGES] for k in range(4 * N_TRAIN_IMAGES)]
    val = [t for tiles in per_image[N_TRAIN_IMAGES:N_TRAIN_IMAGES + N_VAL_IMAGES] for t in tiles]
    test = [t for tiles in per_image[N_TRAIN_IMAGES + N_VAL_IMAGES:] for t in tiles]
    return HESplit(train, val, test)
