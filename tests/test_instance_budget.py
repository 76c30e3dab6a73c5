"""Instance mode's decoder work is bounded: faint objects never become prompts, prompts are capped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_autosam.inference import instances as inst
from napari_autosam.inference.instances import InstanceOptions, confident_objects, window_instances


def disks(shape, centres, radius, values):
    prob = np.full(shape, 0.1, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for (cy, cx), v in zip(centres, values):
        prob[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = v
    return prob


@pytest.fixture
def decoded(monkeypatch):
    """Counts the prompts that reach SAM's mask decoder."""
    calls = []
    real = inst.decode

    def counting(sam, embedding, **kwargs):
        calls.append(len(kwargs["boxes"]))
        return real(sam, embedding, **kwargs)

    monkeypatch.setattr(inst, "decode", counting)
    return calls


def test_faint_objects_are_dropped_before_prompting():
    prob = disks((64, 96), [(20, 20), (20, 70), (45, 45)], 8, [0.95, 0.55, 0.8])
    labels = inst.split_objects(prob > 0.5)
    assert labels.max() == 3
    kept = confident_objects(labels, prob, 0.6)
    assert kept.max() == 2 and kept[20, 70] == 0 and kept[20, 20] > 0 and kept[45, 45] > 0
    assert confident_objects(labels, prob, 0.0) is labels


def test_prompts_are_capped_by_probability_mass(tiny_sam, decoded):
    centres = [(16 + 32 * (i // 4), 16 + 32 * (i % 4)) for i in range(8)]
    prob = disks((128, 128), centres, 9, [0.7, 0.9, 0.99, 0.8, 0.75, 0.95, 0.65, 0.85])
    embedding = torch.zeros(1, 256, 64, 64)
    options = InstanceOptions(max_prompts=3, batch_size=2, min_agreement=0.0)
    found, note = window_instances(tiny_sam, embedding, prob, options)
    assert sum(decoded) == 3 and max(decoded) <= 2  # 3 prompts, in batches of at most 2
    assert len(found) == 8
    assert note is not None and "8 objects" in note and "3 with the most probability mass" in note and "5 kept" in note
    refined, rest = inst.cap_prompts(inst.object_prompts(inst.split_objects(prob > 0.5)), prob, 3)
    values = sorted(float(prob[int(y), int(x)]) for x, y in refined.points)
    assert values == pytest.approx([0.9, 0.95, 0.99]) and len(rest) == 5
    decoded.clear()
    found, note = window_instances(tiny_sam, embedding, prob, InstanceOptions(max_prompts=None))
    assert sum(decoded) == 8 and note is None and len(found) == 8


def test_a_capped_segmentation_says_so(tiny_sam):
    from napari_autosam.data.synthetic import make_nuclei_image
    from napari_autosam.inference import Segmenter
    from napari_autosam.inference.testing import threshold_model
    from napari_autosam.progress import run

    image = make_nuclei_image((160, 160), seed=5)[0]
    seg = Segmenter(tiny_sam, threshold_model(0.35), instance_options=InstanceOptions(source="h", max_prompts=2))
    result = run(seg.segment(image, mode="instances"))
    assert result.instances.max() > 2  # the rest are kept, unrefined
    assert any("capped" in m and "max_prompts=2" in m for m in result.messages)


def test_bad_budget_options_are_refused():
    with pytest.raises(ValueError, match="max_prompts"):
        InstanceOptions(max_prompts=-1)
    with pytest.raises(ValueError, match="min_confidence"):
        InstanceOptions(min_confidence=1.5)
