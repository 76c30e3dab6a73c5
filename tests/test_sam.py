import numpy as np
import pytest
import torch

from napari_autosam.progress import run
from napari_autosam.sam.download import OFFICIAL_CHECKPOINTS
from napari_autosam.sam.embedding import (
    Geometry,
    embed_images,
    frame_to_original,
    mask_to_padded_frame,
    prepare_image,
)
from napari_autosam.sam.registry import (
    SAM_BUILDERS,
    SamCheckpointError,
    infer_variant,
    load_sam,
    load_sam_checkpoint,
    tiny_checkpoint,
)


def test_tiny_sam_is_frozen_and_in_eval_mode(tiny_sam):
    assert tiny_sam.variant == "tiny"
    assert not any(p.requires_grad for p in tiny_sam.parameters())
    assert not tiny_sam.training


def test_official_vit_b_format_loads_through_the_same_path(tmp_path):
    """A state dict with exactly the official vit_b keys and shapes, under the official name."""
    reference = SAM_BUILDERS["vit_b"]().state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in reference.items()}
    path = tmp_path / OFFICIAL_CHECKPOINTS["vit_b"].filename
    torch.save(state, path)
    sam = run(load_sam(path))
    assert sam.variant == "vit_b"
    assert len(sam.image_encoder.blocks) == 12
    loaded = sam.state_dict()
    assert set(loaded) == set(state)
    key = "image_encoder.blocks.5.attn.qkv.weight"
    assert torch.equal(loaded[key], state[key])
    assert not any(p.requires_grad for p in sam.parameters())


def test_variant_mismatch_and_garbage_files_are_clear_errors(tmp_path):
    tiny = tiny_checkpoint(tmp_path)
    with pytest.raises(SamCheckpointError, match="tiny SAM, not vit_b"):
        load_sam_checkpoint(tiny, variant="vit_b")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SamCheckpointError, match="junk.pth"):
        load_sam_checkpoint(junk)
    with pytest.raises(SamCheckpointError, match="no 'image_encoder"):
        infer_variant({"foo": torch.zeros(1)})
    with pytest.raises(FileNotFoundError, match="neither a variant name"):
        run(load_sam(tmp_path / "missing.pth"))


def test_embedding_shape_and_geometry(tiny_sam):
    images = [np.full((300, 500, 3), 128, np.uint8), np.zeros((64, 64, 3), np.uint8)]
    events = []
    from napari_autosam.progress import run as drive

    emb = drive(embed_images(tiny_sam, images), events.append)
    assert emb.shape == (2, 256, 64, 64) and emb.dtype == torch.float32
    assert [e.step for e in events] == [1, 2]
    x, geometry = prepare_image(images[0], 1024)
    assert x.shape == (1, 3, 1024, 1024)
    assert geometry == Geometry(300, 500) and geometry.resized(1024) == (614, 1024)
    # padding rows are exactly zero after normalisation
    assert torch.count_nonzero(x[..., 614:, :]) == 0


def test_logits_map_back_to_the_original_frame():
    geometry = Geometry(30, 50)
    frame = torch.full((1, 1, 256, 256), -10.0)
    h, w = geometry.resized(256)
    frame[..., :h, : w // 2] = 10.0  # left half of the image is foreground
    back = frame_to_original(frame, geometry)
    assert back.shape == (1, 1, 30, 50)
    positive = (back[0, 0] > 0).numpy()
    assert positive[:, :24].all() and not positive[:, 26:].any()
    mask = np.zeros((30, 50), bool)
    mask[:, :25] = True
    framed = mask_to_padded_frame(mask)
    assert framed.shape == (1, 256, 256)
    assert framed[0, :h, : w // 2 - 1].all() and framed[0, h:, :].sum() == 0
