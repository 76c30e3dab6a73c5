"""Where files live (napari_autosam.paths), which SAM a module is, and the one SAM-variant check."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_autosam import paths
from napari_autosam.progress import run
from napari_autosam.sam.registry import (
    SamIdentity,
    SamMismatchError,
    check_sam_variant,
    choose_sam,
    sam_identity,
    set_sam_identity,
)


def test_every_default_location_comes_from_the_two_roots(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(paths.SCRATCH_ENV, str(tmp_path / "scratch"))
    assert paths.annotation_dir() == tmp_path / "data" / "annotations"
    assert paths.model_store_dir("vit_b") == tmp_path / "data" / "models" / "vit_b"
    assert paths.model_store_dir("tiny", root=tmp_path / "elsewhere") == tmp_path / "elsewhere" / "models" / "tiny"
    assert paths.checkpoint_dir() == tmp_path / "cache" / "checkpoints" and paths.checkpoint_dir().is_dir()
    assert paths.embedding_dir() == tmp_path / "cache" / "embeddings"
    assert paths.scratch_dir() == tmp_path / "scratch"
    assert set(paths.describe()) >= {"data_dir", "models", "annotations", "cache_dir", "checkpoints", "embeddings"}
    # the older names are the same functions, not second copies
    from napari_autosam import annotations
    from napari_autosam.sam import download

    assert annotations.data_dir is paths.data_dir and download.cache_dir is paths.cache_dir
    assert annotations.default_annotation_dir() == paths.annotation_dir()


def test_lineage_official_files_share_custom_files_get_their_own():
    assert paths.sam_lineage("vit_b", Path("/x/sam_vit_b_01ec64.pth")) == "vit_b"
    assert paths.sam_lineage("tiny", Path("/x/sam_tiny_r1.pth")) == "tiny"
    assert paths.sam_lineage("vit_b", Path("/x/medsam.pth")) == "vit_b-medsam"
    assert paths.sam_lineage(None) == "sam"


def test_load_sam_records_its_identity(tiny_sam):
    identity = sam_identity(tiny_sam)
    assert isinstance(identity, SamIdentity) and identity.variant == "tiny"
    assert identity.checkpoint_path is not None and identity.checkpoint_path.is_file()
    assert identity.official and identity.lineage == "tiny" and identity.describe() == "tiny"
    with pytest.raises(AttributeError):
        identity.variant = "vit_b"  # frozen


def test_identity_of_a_sam_built_elsewhere_comes_from_its_architecture(tmp_path):
    from napari_autosam.sam.registry import SAM_BUILDERS

    sam = SAM_BUILDERS["tiny"]()
    assert sam_identity(sam) == SamIdentity("tiny")
    set_sam_identity(sam, SamIdentity("tiny", tmp_path / "mine.pth"))
    assert sam_identity(sam).lineage == "tiny-mine" and sam_identity(sam).describe() == "tiny (mine.pth)"


def test_one_variant_check_with_one_message(tiny_sam):
    check_sam_variant("tiny", tiny_sam)
    check_sam_variant(None, tiny_sam)  # untrained or foreign models pass
    with pytest.raises(SamMismatchError, match="trained for SAM vit_b, but SAM tiny is loaded"):
        check_sam_variant("vit_b", tiny_sam, "m.safetensors")
    assert choose_sam(None, "tiny") == "tiny" and choose_sam("vit_l", "tiny") == "vit_l" and choose_sam(None, None) == "vit_b"


def test_train_without_store_or_out_saves_where_the_widget_looks(tiny_sam, tmp_path, monkeypatch):
    from napari_autosam.data.synthetic import make_nuclei_dataset
    from napari_autosam.models.store import ModelStore
    from napari_autosam.training import TrainConfig, samples_from_arrays, train

    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "data"))
    pairs = make_nuclei_dataset(2, (96, 96), seed=3)
    samples = samples_from_arrays([i for i, _ in pairs], [m > 0 for _, m in pairs])
    config = TrainConfig(epochs=1, h_epochs=0, min_steps=0, batch_size=2, input_size=64, variants=("identity",),
                         patience=None)
    result = run(train(tiny_sam, samples, config=config))
    store = ModelStore(paths.model_store_dir(sam_identity(tiny_sam)))
    assert result.path.parent == tmp_path / "data" / "models" / "tiny"
    assert store.versions() == [result.version] and store.active == result.version
