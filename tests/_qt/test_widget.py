"""The widget's parts one by one: stacks, regions, cancel, errors, models, shortcuts, tooltips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from napari.utils.notifications import notification_manager
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractButton, QCheckBox, QComboBox, QSpinBox

from napari_autosam._qt.main_widget import SHORTCUTS

pytestmark = pytest.mark.gui


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_stack_current_slice_then_whole_stack(viewer, widget, stack_sample, qtbot, idle):
    seg, cmp = widget.segment_section, widget.compare_section
    seg.select("nuclei stack")
    assert [seg.scope_combo.itemData(i) for i in range(seg.scope_combo.count())] == ["slice", "stack"]
    viewer.dims.set_current_step(0, 5)
    seg.select("nuclei stack", "slice")
    click(qtbot, seg.segment_button)
    idle()
    h = viewer.layers["h(g(I))"]
    assert h.data.shape == (8, 192, 192)
    filled = [z for z in range(8) if h.data[z].any()]
    assert filled == [5], "only the shown slice is segmented"
    seg.select("nuclei stack", "stack")
    click(qtbot, seg.segment_button)
    idle()
    assert all(h.data[z].any() for z in range(8))
    # instance mode on the shown slice (the untrained mask is noise: only big objects, to keep the test short;
    # min_confidence 0.5 keeps every object of `prob > 0.5`, which the default 0.6 would drop as too unsure)
    from napari_autosam.inference.instances import InstanceOptions

    widget.session.segmenter.instance_options = InstanceOptions(min_size=150, batch_size=64, min_confidence=0.5)
    seg.select("nuclei stack", "slice", instances=True)
    click(qtbot, seg.segment_button)
    idle()
    instances = viewer.layers["instances"].data
    assert instances.shape == (8, 192, 192) and instances[5].max() >= 1 and not instances[4].any()
    assert cmp.compare()
    assert len(cmp.dice_values) == 8 and "per slice" in cmp.result.text()
    cmp.leave()


def test_visible_region_only(viewer, widget, he_sample, qtbot, idle):
    seg = widget.segment_section
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (100, 100)
    camera.zoom = 4
    qtbot.wait(50)
    seg.select("nuclei H&E", "region")
    click(qtbot, seg.segment_button)
    idle()
    y0, y1, x0, x1 = seg.last_region
    assert 0 <= y0 < y1 <= 250 and 0 <= x0 < x1 <= 250, "the region is what the zoomed-in canvas shows"
    h = viewer.layers["h(g(I))"].data
    assert h.shape == (384, 384)
    outside = np.ones(h.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert not h[outside].any(), "pixels outside the view stay untouched"
    assert h[y0:y1, x0:x1].any()


def test_cancel_keeps_gui_alive(viewer, widget, stack_sample, qtbot, idle):
    seg = widget.segment_section
    widget.model_section.load()
    idle()
    seg.select("nuclei stack", "stack")
    outcomes = []
    widget.segment_runner.finished.connect(lambda title, outcome: outcomes.append(outcome))
    click(qtbot, seg.segment_button)
    panel_cancel = [b for b in seg.findChildren(QAbstractButton) if b.text() == "Cancel"][0]
    assert panel_cancel.isEnabled()
    click(qtbot, panel_cancel)
    idle()
    assert outcomes == ["cancelled"]
    assert "Cancelled" in seg.note.text()


def test_errors_become_notifications(viewer, widget, tmp_path, qtbot, idle):
    bad = tmp_path / "not_a_sam.pth"
    bad.write_bytes(b"this is not a checkpoint")
    notification_manager.records.clear()
    widget.model_section.select_sam(str(bad))
    outcomes = []
    widget.model_runner.finished.connect(lambda title, outcome: outcomes.append(outcome))
    widget.model_section.load()
    idle()
    assert outcomes == ["failed"]
    messages = [str(n.message) for n in notification_manager.records]
    assert any("Loading SAM" in m and "not_a_sam.pth" in m for m in messages), messages
    assert not any("Traceback" in m for m in messages)
    assert widget.session.sam is None


def test_segmenting_without_an_image_says_what_to_do(viewer, widget, qtbot):
    notification_manager.records.clear()
    assert widget.segment_section.segment() is False
    assert any("Open an image" in str(n.message) for n in notification_manager.records)


def test_prompt_generator_new_save_load(viewer, widget, he_sample, tmp_path, qtbot, idle):
    from napari_autosam.models.checkpoint import save_checkpoint
    from napari_autosam.training import TrainConfig, initial_model

    widget.model_section.load()
    idle()
    assert widget.session.model is None and not widget.model_section.save_button.isEnabled()
    model = initial_model(TrainConfig(generator="hardnet_small", input_size=128))
    path = save_checkpoint(tmp_path / "shared.safetensors", model.prompt_generator, model.surrogate, sam_variant="tiny")
    widget.model_section.open_model(str(path))
    idle()
    assert widget.session.model_label == "shared.safetensors"
    assert "shared.safetensors" in widget.model_section.model_status.text()
    saved = widget.model_section.save_model(str(tmp_path / "copy"))
    assert saved.name == "copy.safetensors" and saved.is_file()
    click(qtbot, widget.model_section.new_button)
    assert widget.session.model is None and "untrained" in widget.model_section.model_status.text()
    # versions live in the data folder, per SAM, never in the working directory
    from napari_autosam.sam.registry import sam_identity

    assert widget.session.model_store.root == widget.session.root / "models" / sam_identity(widget.session.sam).lineage
    assert str(widget.session.root) in widget.model_section.folder_label.text()
    assert not str(widget.session.root).startswith(os.getcwd())


def test_shortcuts_do_not_clash_with_napari(viewer, widget):
    from app_model.types import KeyBinding
    from napari._app_model import get_app_model
    from napari.utils.shortcuts import default_shortcuts

    ours = {KeyBinding.from_str(key) for key, _, _ in SHORTCUTS}
    napari_keys = {KeyBinding.from_str(str(k)) for keys in default_shortcuts.values() for k in keys}
    napari_keys |= {KeyBinding.validate(kb.keybinding) for kb in get_app_model().keybindings}
    assert not ours & napari_keys
    bound = {KeyBinding.validate(k) for k in viewer.keymap}
    assert ours <= bound
    for key, what, _ in SHORTCUTS:  # every shortcut is listed in the widget's help
        assert key.replace("-", "+") in widget.help.text() and what in widget.help.text()


def test_shortcut_runs_its_action(viewer, widget, he_sample, qtbot, idle):
    from app_model.types import KeyBinding

    action = viewer.keymap[KeyBinding.from_str("Shift-Alt-R")]
    action(viewer)
    idle()
    assert "AutoSAM" in viewer.layers


def test_every_control_has_a_tooltip(widget):
    controls = widget.findChildren(QAbstractButton) + widget.findChildren(QComboBox) + widget.findChildren(QSpinBox)
    controls += widget.findChildren(QCheckBox)
    controls = [c for c in controls if not c.objectName().startswith("qt_")]  # Qt's own parts (a table's corner button)
    missing = [c.text() if hasattr(c, "text") else type(c).__name__ for c in controls if not c.toolTip()]
    assert controls and not missing, missing


def test_opening_the_plugin_after_napari_has_drawn_does_not_crash(tmp_path):
    """Regression: torch's triton import after Mesa's LLVM is loaded killed the process (segfault).

    The package's Qt half is imported before napari draws (as a test module or a script may do),
    so the guard must also run where each section first pulls in torch, not only on import.
    """
    script = textwrap.dedent("""
        import napari_autosam._qt.workers  # before anything is drawn: no torch yet
        import napari
        from qtpy.QtWidgets import QApplication
        viewer = napari.Viewer()
        viewer.add_image(__import__("numpy").zeros((32, 32)))
        QApplication.processEvents()
        dock, widget = viewer.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
        QApplication.processEvents()
        print("ok", type(widget).__name__)
        viewer.close()
    """)
    env = {**os.environ, "NAPARI_AUTOSAM_DATA": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok AutoSAMWidget" in done.stdout


def test_torch_reaching_triton_after_napari_has_drawn_does_not_crash(tmp_path):
    """Regression: the widgets imported before napari drew, then the first optimiser (which imports
    torch._dynamo and so triton) built after Mesa's LLVM was loaded: a segfault in the demo."""
    script = textwrap.dedent("""
        import napari_autosam._qt  # as pytest collection or a plugin scan does, before anything is drawn
        import napari, numpy, torch
        from qtpy.QtWidgets import QApplication
        viewer = napari.Viewer()
        viewer.add_image(numpy.zeros((32, 32)))
        QApplication.processEvents()
        viewer.screenshot()  # napari has drawn: Mesa's LLVM is loaded now
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
        print("ok")
        viewer.close()
    """)
    env = {**os.environ, "NAPARI_AUTOSAM_DATA": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok" in done.stdout


def test_prompts_on_a_stack_edit_only_the_shown_slice(viewer, widget, stack_sample, qtbot, idle):
    seg, cor = widget.segment_section, widget.correct_section
    viewer.dims.set_current_step(0, 2)
    seg.select("nuclei stack", "slice")
    seg.segment()
    idle()
    autosam = viewer.layers["AutoSAM"]
    before = np.array(autosam.data)
    cor.start_points(True)
    viewer.layers["SAM points"].add([[2, 96, 96]])
    idle()
    changed = np.nonzero((autosam.data != before).any(axis=(1, 2)))[0].tolist()
    assert changed == [2]
    assert autosam.data[2].max() == before.max() + 1
    cor.start_points(False)  # a negative click on the same object shrinks or keeps it, never adds a label
    viewer.layers["SAM points"].add([[2, 100, 100]])
    idle()
    assert autosam.data.max() == before.max() + 1
    entry = cor.accept()
    assert entry.slice_index == (2,) and entry.shape == (192, 192)


def test_sync_mode_runs_tasks_in_the_gui_thread(viewer, widget, he_sample, monkeypatch):
    monkeypatch.setenv("NAPARI_AUTOSAM_SYNC", "1")
    assert widget.segment_section.segment()
    # no waiting: loading SAM and segmenting both happened inside the call
    assert not any(r.running for r in widget.runners)
    assert viewer.layers["AutoSAM"].data.shape == (384, 384)


def test_offline_download_failure_says_where_to_put_the_file(viewer, widget, qtbot, idle):
    notification_manager.records.clear()
    widget.model_section.select_sam("vit_b")
    widget.model_section.load()
    idle()
    [message] = [str(n.message) for n in notification_manager.records if "Loading SAM" in str(n.message)]
    assert "could not download" in message and "sam_vit_b_01ec64.pth" in message
    assert "copy it" in message  # the by-hand instructions
    assert widget.session.sam is None


def test_cancelled_fine_tune_keeps_the_best_model_so_far(viewer, widget, he_sample, qtbot, idle):
    truth = viewer.layers["nuclei H&E ground truth"].data
    widget.session.annotations.accept(he_sample.data, truth > 0)
    widget.session.annotations.accept(he_sample.data[::-1].copy(), truth[::-1] > 0)
    widget.session.train_settings = {**widget.session.train_settings, "epochs": 50}
    fine = widget.finetune_section
    assert fine.start()
    qtbot.waitUntil(lambda: bool(fine.plot.points["loss"]), timeout=120_000)
    widget.cancel_all()
    idle()
    assert fine.last_result is not None and fine.last_result.cancelled
    assert widget.session.model_label == fine.last_result.version


def test_fine_tune_budget_controls_build_the_training_config(widget):
    from napari_autosam.jobs.defaults import DEFAULT_TIME_LIMIT
    from napari_autosam.training.config import DEFAULT_H_STEPS, DEFAULT_STEPS

    fine = widget.finetune_section
    assert (fine.steps.value(), fine.h_steps.value()) == (DEFAULT_STEPS, DEFAULT_H_STEPS)
    assert fine.time_limit.value() == DEFAULT_TIME_LIMIT
    widget.session.train_settings = {"batch_size": 2}
    fine.steps.setValue(120)
    fine.h_steps.setValue(0)
    fine.time_limit.setValue(0)  # shown as "none"
    config = fine.config()
    assert (config.steps, config.h_steps, config.time_limit, config.batch_size) == (120, 0, None, 2)
    assert config.stage_steps("h", 3) == 0
    fine.time_limit.setValue(60)
    widget.session.train_settings = {"epochs": 2}  # an epoch budget in the settings replaces the step boxes
    config = fine.config()
    assert (config.steps, config.h_steps, config.epochs, config.time_limit) == (None, None, 2, 60)
    # what the boxes show is what runs: an epoch budget greys them out instead of showing unused numbers
    assert not fine.steps.isEnabled() and fine.steps.text() == "by epochs" == fine.h_steps.text()
    assert fine.budget_note.text() == "Each stage (g / h) runs at least 100 / 100 steps, even past the time limit."
    fine.use_settings({"steps": 50, "h_steps": 20, "time_limit": 30, "batch_size": 2})
    config = fine.config()
    assert (fine.steps.value(), fine.h_steps.value(), fine.time_limit.value()) == (50, 20, 30)
    assert (config.steps, config.h_steps, config.time_limit, config.batch_size) == (50, 20, 30, 2)
    assert fine.steps.isEnabled() and "at least 50 / 20 steps" in fine.budget_note.text()
    widget.session.train_settings = {"steps": 7, "time_limit": None}  # set directly: the boxes take it over
    assert fine.config().steps == 7 == fine.steps.value() and fine.time_limit.text() == "none"
    assert not fine.budget_note.isVisibleTo(fine)
