import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_autosam.data.synthetic import make_nuclei_dataset, make_nuclei_image, make_nuclei_stack, write_dataset


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of distinct nonzero labels that share an edge (4-connectivity, any number of axes)."""
    pairs = set()
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)[:-1].ravel()
        b = np.moveaxis(labels, axis, 0)[1:].ravel()
        touching = (a > 0) & (b > 0) & (a != b)
        pairs |= {(min(x, y), max(x, y)) for x, y in zip(a[touching].tolist(), b[touching].tolist())}
    return pairs


def assert_valid_labels(labels: np.ndarray) -> None:
    assert labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0
    np.testing.assert_array_equal(ids[1:], np.arange(1, len(ids)))
    for value, box in enumerate(ndi.find_objects(labels), start=1):
        _, pieces = ndi.label(labels[box] == value)
        assert pieces == 1, f"label {value} is split into {pieces} pieces"


@pytest.mark.parametrize("stain", ["fluorescence", "he"])
def test_same_seed_same_image(stain):
    image_a, labels_a = make_nuclei_image((96, 96), stain=stain, seed=3)
    image_b, labels_b = make_nuclei_image((96, 96), stain=stain, seed=3)
    image_c, _ = make_nuclei_image((96, 96), stain=stain, seed=4)
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(labels_a, labels_b)
    assert not np.array_equal(image_a, image_c)


@pytest.mark.parametrize(
    ("stain", "rgb", "shape", "dtype"),
    [
        ("fluorescence", None, (80, 96), np.uint16),
        ("fluorescence", True, (80, 96, 3), np.uint8),
        ("he", None, (80, 96, 3), np.uint8),
        ("he", False, (80, 96), np.uint8),
    ],
)
def test_output_layouts(stain, rgb, shape, dtype):
    image, labels = make_nuclei_image((80, 96), stain=stain, rgb=rgb, seed=0)
    assert image.shape == shape and image.dtype == dtype
    assert labels.shape == (80, 96)
    assert_valid_labels(labels)


def test_labels_are_unique_connected_and_some_touch():
    _, labels = make_nuclei_image((256, 256), touching_fraction=0.4, seed=1)
    assert_valid_labels(labels)
    assert labels.max() >= 20
    assert len(touching_pairs(labels)) >= 3


def test_no_touching_when_fraction_is_zero():
    _, labels = make_nuclei_image((192, 192), touching_fraction=0.0, seed=2)
    assert labels.max() > 5
    assert touching_pairs(labels) == set()


def test_requested_number_of_nuclei():
    _, labels = make_nuclei_image((128, 128), n_nuclei=5, touching_fraction=0.0, seed=5)
    assert labels.max() == 5


def test_contrast_matches_the_stain():
    fluo, labels = make_nuclei_image((128, 128), stain="fluorescence", seed=6)
    assert fluo[labels > 0].mean() > 2 * fluo[labels == 0].mean()
    he, labels = make_nuclei_image((128, 128), stain="he", seed=6)
    inside, outside = he[labels > 0].astype(float), he[labels == 0].astype(float)
    assert inside.mean() < outside.mean()  # nuclei absorb more light
    red_minus_blue = inside[:, 0].mean() - inside[:, 2].mean()
    assert red_minus_blue < 0  # hematoxylin is blue-purple
    assert outside[:, 0].mean() > outside[:, 1].mean()  # eosin background is pink


def test_noise_free_image_is_smoother():
    noisy, _ = make_nuclei_image((96, 96), seed=7)
    clean, _ = make_nuclei_image((96, 96), noise=0.0, seed=7)
    roughness = [np.abs(np.diff(im.astype(float), axis=1)).mean() for im in (noisy, clean)]
    assert roughness[1] < roughness[0]


def test_dataset_is_deterministic_and_prefix_stable():
    short = make_nuclei_dataset(2, (64, 64), seed=9)
    long = make_nuclei_dataset(3, (64, 64), seed=9)
    assert len(long) == 3
    for (image_a, labels_a), (image_b, labels_b) in zip(short, long):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(labels_a, labels_b)
    assert not np.array_equal(long[0][0], long[1][0])


def test_stack_shapes_and_smooth_slices():
    stack, labels = make_nuclei_stack(depth=8, shape=(96, 96), seed=0)
    assert stack.shape == labels.shape == (8, 96, 96)
    assert stack.dtype == np.uint16
    assert_valid_labels(labels)
    slices_per_label = [(labels == v).any(axis=(1, 2)).sum() for v in range(1, labels.max() + 1)]
    assert max(slices_per_label) >= 3  # one id follows a nucleus through several slices
    planes = stack.astype(float).reshape(8, -1)
    near = np.corrcoef(planes[3], planes[4])[0, 1]
    far = np.corrcoef(planes[0], planes[7])[0, 1]
    assert near > far


def test_write_dataset(tmp_path):
    images_dir, masks_dir = write_dataset(tmp_path / "synth", 2, (48, 48), seed=1, stain="he")
    image_names = sorted(p.name for p in images_dir.iterdir())
    assert image_names == ["img_000.tif", "img_001.tif"]
    assert sorted(p.name for p in masks_dir.iterdir()) == image_names
    expected = make_nuclei_dataset(2, (48, 48), seed=1, stain="he")
    np.testing.assert_array_equal(tifffile.imread(images_dir / "img_001.tif"), expected[1][0])
    np.testing.assert_array_equal(tifffile.imread(masks_dir / "img_001.tif"), expected[1][1])


def test_unknown_stain_is_rejected():
    with pytest.raises(ValueError, match="stain"):
        make_nuclei_image((32, 32), stain="ihc")
