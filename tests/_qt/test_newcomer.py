"""What a newcomer meets in the widget: one version in use, visible corrections, a clear comparison,
honest validation, and no SAM download for a fine-tune that cannot start."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager
from qtpy.QtCore import Qt

from napari_autosam._qt.compare_section import grid_of
from napari_autosam.losses import dice

pytestmark = pytest.mark.gui


def messages() -> list[str]:
    return [str(n.message) for n in notification_manager.records]


def in_use_rows(fine) -> list[str]:
    rows = [fine.versions.item(i) for i in range(fine.versions.count())]
    return [row.data(Qt.ItemDataRole.UserRole) for row in rows if "in use" in row.text()]


def _train_from_python(tiny_sam, he_image, truth):
    """A model trained through the Python API with the default locations (no store, no out)."""
    from napari_autosam.progress import run
    from napari_autosam.training import TrainConfig, samples_from_arrays, train

    config = TrainConfig(epochs=1, h_epochs=1, batch_size=2, input_size=128, variants=("identity",), patience=None)
    samples = samples_from_arrays([he_image, he_image[::-1].copy()], [truth > 0, truth[::-1] > 0])
    return run(train(tiny_sam, samples, config=config))


def test_python_trained_model_is_listed_and_a_cancel_leaves_one_version_in_use(
        viewer, widget, he_sample, tiny_sam, qtbot, idle):
    truth = viewer.layers["nuclei H&E ground truth"].data
    trained = _train_from_python(tiny_sam, he_sample.data, truth)
    widget.model_section.load()
    idle()
    fine, session = widget.finetune_section, widget.session
    listed = [fine.versions.item(i).data(Qt.ItemDataRole.UserRole) for i in range(fine.versions.count())]
    assert listed == [trained.version] == ["v0001"], "the widget lists what train() saved by default"
    assert session.version == "v0001" and in_use_rows(fine) == ["v0001"]

    # fine-tune, and cancel before any epoch could improve on v0001
    session.annotations.accept(he_sample.data, truth > 0)
    session.train_settings = {**session.train_settings, "epochs": 200}
    fine.runner.progress.connect(lambda event: widget.cancel_all())
    assert fine.start()
    idle()
    result = fine.last_result
    assert result is not None and result.cancelled
    store = session.model_store
    # one answer everywhere: the store's pointer, the session, the version list and the model line
    assert session.version == store.active
    assert in_use_rows(fine) == [store.active]
    assert store.active in widget.model_section.model_status.text()
    # cancelled while encoding, so nothing improved: v0002 is kept but not used, and the widget says so
    assert result.version == "v0002" and store.active == "v0001"
    assert any("still using v0001" in m for m in messages()), messages()


def test_the_edited_layer_is_on_top_visible_and_named(viewer, widget, he_sample, qtbot, idle):
    widget.segment_section.segment()
    idle()
    autosam, h = viewer.layers["AutoSAM"], viewer.layers["h(g(I))"]
    names = [layer.name for layer in viewer.layers]
    assert names.index("AutoSAM") > names.index("h(g(I))"), "paint on AutoSAM is drawn above h(g(I))"
    assert autosam.visible and autosam.opacity >= 0.7 and h.opacity < autosam.opacity
    assert viewer.layers.selection.active is autosam
    assert "Editing" in widget.correct_section.editing.text() and "AutoSAM" in widget.correct_section.editing.text()
    # layers moved by hand: picking the brush on AutoSAM brings it back to the top
    viewer.layers.move(viewer.layers.index(autosam), 0)
    h.opacity = 1.0
    autosam.mode = "paint"
    names = [layer.name for layer in viewer.layers]
    assert names.index("AutoSAM") > names.index("h(g(I))") and h.opacity < 1.0
    assert str(autosam.mode) == "paint", "the brush stays picked"
    # SAM prompts keep their layer above the mask they edit, and the text says what they edit
    widget.correct_section.start_points(True)
    names = [layer.name for layer in viewer.layers]
    assert names.index("SAM points") > names.index("AutoSAM") > names.index("h(g(I))")
    assert "AutoSAM" in widget.correct_section.editing.text()


def test_compare_is_titled_and_its_dice_follows_a_resegment(viewer, widget, he_sample, qtbot, idle):
    from napari_autosam.training import TrainConfig, initial_model

    seg, cmp = widget.segment_section, widget.compare_section
    seg.segment()
    idle()
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center, camera.zoom = (100.0, 120.0), 3.0
    assert cmp.compare()
    assert camera.zoom < 3.0, "comparing shows the whole image in every pane"
    panes = [viewer.layers[name] for name in ("h(g(I))", "AutoSAM", "disagreement", "nuclei H&E")]
    assert all(layer.visible and layer.name_overlay.visible for layer in panes), "every pane shows its title"
    assert grid_of(viewer).shape == (2, 2)
    first = list(cmp.dice_values)
    # another g, then segment again while comparing: the numbers follow, the panes stay
    widget.session.set_model(initial_model(TrainConfig(generator="hardnet_small", input_size=128, seed=7)), "other g")
    seg.rerun()
    idle()
    autosam, h = viewer.layers["AutoSAM"].data, viewer.layers["h(g(I))"].data
    assert cmp.dice_values == [pytest.approx(dice(autosam, h))]
    assert cmp.dice_values != first, "a different g gives a different agreement"
    assert f"{dice(autosam, h):.3f}" in cmp.result.text()
    np.testing.assert_array_equal(viewer.layers["disagreement"].data == 2, (h > 0) & ~(autosam > 0))
    assert cmp.active and grid_of(viewer).enabled and viewer.layers["disagreement"].visible
    cmp.leave()
    assert not [layer.name for layer in panes if layer.name_overlay.visible]
    assert viewer.layers.selection.active is viewer.layers["AutoSAM"]
    assert camera.zoom == pytest.approx(3.0) and tuple(camera.center)[-2:] == pytest.approx((100.0, 120.0)), \
        "the canvas is where it was before comparing"


def test_one_correction_says_honestly_what_it_was_validated_on(viewer, widget, he_sample, qtbot, idle):
    from napari_autosam._qt.finetune_section import dice_text, on_training_data

    truth = viewer.layers["nuclei H&E ground truth"].data
    widget.session.annotations.accept(he_sample.data, truth > 0)
    widget.session.annotations_changed.emit()  # what the Correct section's accept does
    fine = widget.finetune_section
    assert "Trains on the 1 accepted correction." in fine.info.text()
    notification_manager.records.clear()
    titles = []
    fine.runner.started.connect(titles.append)
    assert fine.start()  # loads SAM first, then trains
    idle()
    assert titles == ["Fine-tuning on 1 correction"]
    assert fine.last_result is not None and not fine.last_result.cancelled
    [done] = [m for m in messages() if "Fine-tuning" in m]
    meta = fine.last_result.model.metadata
    said = dice_text(meta)
    assert said and said[1:] in done, (said, done)
    # one image: either nothing was held out (and it says "training image"), or a strip of it was
    assert ("training image" in done) == on_training_data(meta) and (("held-out" in done) != on_training_data(meta))
    tip, row = fine.versions.item(0).toolTip(), fine.versions.item(0).text()
    assert said in tip and (("(train)" in row) == on_training_data(meta))


def test_fine_tune_without_corrections_never_loads_sam(viewer, widget, monkeypatch):
    import napari_autosam.sam.registry as registry

    calls = []
    monkeypatch.setattr(registry, "load_sam", lambda *a, **k: calls.append(a))
    notification_manager.records.clear()
    assert widget.finetune_section.start() is False
    assert calls == [] and widget.session.sam is None and not widget.model_runner.running
    assert any("Accept at least one corrected mask first" in m for m in messages())


def test_texts_a_newcomer_reads_whole(viewer, widget, qtbot, idle):
    combo = widget.model_section.sam_combo
    metrics = combo.fontMetrics()
    widest = max(metrics.horizontalAdvance(combo.itemText(i)) for i in range(combo.count()))
    assert widest < 200, "SAM choices fit a narrow dock without eliding"
    assert all(combo.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(combo.count()))
    notification_manager.records.clear()
    widget.model_section.select_sam("vit_b")
    widget.model_section.load()  # offline in tests: the download fails
    idle()
    [toast] = [m for m in messages() if "Loading SAM" in m]
    first_line = toast.splitlines()[0]
    assert first_line == "Loading SAM ViT-B failed:", "the toast's one visible line is short, whole, without '_'"
    assert "could not download" in toast
    assert "could not download" in widget.model_section.sam_status.text(), "the reason stays readable in the widget"
    assert widget.finetune_section.info.text().startswith("Trains on the 0 accepted corrections")


def test_long_notifications_put_their_gist_on_the_visible_line():
    from napari_autosam._qt.notify import TOAST_LINE, toast_text

    text = toast_text("Fine-tuning done: now using v0002. Held-out validation Dice 0.812. Segmenting again.")
    assert text.splitlines()[0] == "Fine-tuning done: now using v0002." and len(text.splitlines()[0]) <= TOAST_LINE
    assert toast_text("Short.") == "Short."
