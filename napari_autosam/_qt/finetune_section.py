"""Section 5, Fine-tune: train g (then h) on the accepted corrections in the background; versions and rollback."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..class_sets import per_class_text
from . import notify
from .plot_panel import LivePlot
from .session import Session
from .workers import ProgressPanel, TaskRunner

#: Prefixes of the progress line per phase (the engine's message says "g step 70/300").
PHASES = {"encode": "SAM embeddings", "train_g": "Stage 1/2", "train_h": "Stage 2/2", "save": "Saving"}


def plural(count: int, noun: str) -> str:
    """``"1 correction"``, ``"2 corrections"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def validation_kind(meta: dict) -> str:
    """What a model's validation Dice was measured on: the engine's kind (``"held-out images"``,
    ``"held-out strip"``, ``"given"``, ``"training image"``), or read from its ``validation`` note."""
    kind = meta.get("validation_kind") or meta.get("val_kind") or (meta.get("metrics") or {}).get("val_kind")
    if kind:
        return str(kind)
    return "training image" if "training image" in str(meta.get("validation") or "") else "held-out images"


def on_training_data(meta: dict) -> bool:
    """True when a model's validation Dice was measured on its own training images."""
    return validation_kind(meta).startswith("train")


#: How each kind of validation is named next to its Dice.
_VALIDATED_ON = {"held-out images": "held-out validation Dice {dice:.3f}",
                 "held-out strip": "validation Dice {dice:.3f} on held-out strips of the corrections",
                 "given": "validation Dice {dice:.3f} on the given validation images",
                 "training image": "Dice {dice:.3f} on the training image (nothing held out, so not a test)"}


def dice_text(meta: dict) -> str | None:
    """The validation Dice with what it was measured on (e.g. "... on the training image"); None without one."""
    dice = (meta.get("metrics") or {}).get("val_dice_autosam")
    if dice is None:
        return None
    kind = validation_kind(meta)
    return _VALIDATED_ON.get(kind, f"validation Dice {{dice:.3f}} ({kind})").format(dice=dice)


def _version_text(row: dict, in_use: str | None) -> tuple[str, str]:
    """A short line for the list and a longer tooltip."""
    metrics = row.get("metrics") or {}
    dice = metrics.get("val_dice_autosam")
    parts = [row["version"]]
    if row.get("trained_on_count"):
        parts.append(f"{row['trained_on_count']} img")
    if dice is not None:
        parts.append(f"Dice {dice:.2f}" + (" (train)" if on_training_data(row) else ""))
    text = " · ".join(parts) + ("  ✓ in use" if row["version"] == in_use else "")
    tip = f"{row['version']}, made {str(row.get('created') or '?').replace('T', ' ')}; " \
          f"{dice_text(row) or 'no validation Dice'}; h(g(I)) {metrics.get('val_dice_h', '?')}; file {row['path']}"
    per_class = per_class_text(row)
    return text, tip + (f"; {per_class}" if per_class else "")


class FinetuneSection(QWidget):
    """Start fine-tuning, watch loss and Dice live, and pick the model version in use."""

    def __init__(self, viewer, session: Session, segment_section, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.session = session
        self.segment_section = segment_section
        self.runner = runner
        self.last_result = None
        self._offset = 0  # x position where the current phase's steps start on the plot
        self._phase_end = 0
        self._phase = None

        self.info = QLabel()
        self.info.setWordWrap(True)
        self.steps, self.h_steps, self.time_limit = _budget_boxes()
        self.budget_note = QLabel()  # what the boxes cannot say: the floor of steps past the time limit
        self.budget_note.setWordWrap(True)
        for box in (self.steps, self.h_steps, self.time_limit):
            box.valueChanged.connect(self._show_budget)
        self.train_button = QPushButton("Fine-tune")
        self.train_button.setToolTip("Train g, then h, on all accepted corrections in the background; the new "
                                     "version is used when it ends and the image is segmented again (Shift+Alt+F)")
        self.train_button.clicked.connect(lambda: self.start())
        self.plot = LivePlot()
        self.versions = QListWidget()
        self.versions.setToolTip("Model versions of this SAM, newest last; the one in use is marked")
        self.versions.setMaximumHeight(110)
        self.use_button = QPushButton("Use selected version")
        self.use_button.setToolTip("Switch to the selected version (roll back) and segment the image again")
        self.use_button.clicked.connect(self._use_clicked)
        form = QFormLayout()
        form.addRow("Steps (g / h)", _row(self.steps, self.h_steps))
        form.addRow("Time limit", self.time_limit)
        form.addRow(self.budget_note)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.info)
        layout.addLayout(form)
        layout.addWidget(self.train_button)
        self.progress_panel = ProgressPanel(runner, phase_names=PHASES)
        layout.addWidget(self.progress_panel)
        layout.addWidget(self.plot)
        layout.addWidget(QLabel("Model versions"))
        layout.addWidget(self.versions)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.use_button)
        layout.addLayout(row)
        runner.progress.connect(self._progress)
        session.annotations_changed.connect(self.refresh)
        session.sam_changed.connect(self.refresh)
        session.model_changed.connect(self.refresh)
        self.refresh()

    # ---------------------------------------------------------------- display

    def refresh(self) -> None:
        try:
            count = len(self.session.annotations)
        except ValueError:
            count = 0
        self.info.setText(f"Trains on the {plural(count, 'accepted correction')}. "
                          + ("Part of them is kept aside to measure the Dice. " if count else "")
                          + "You can keep working while it runs.")
        self._show_budget()
        self.versions.clear()
        store = self.session.model_store
        if store is None:
            self.versions.addItem("(load a SAM to see its model versions)")
            self.use_button.setEnabled(False)
            return
        in_use = self.session.version
        for row in store.describe():
            text, tip = _version_text(row, in_use)
            item = QListWidgetItem(text)
            item.setToolTip(tip)
            item.setData(Qt.ItemDataRole.UserRole, row["version"])
            self.versions.addItem(item)
            if row["version"] == in_use:
                self.versions.setCurrentItem(item)
        self.use_button.setEnabled(self.versions.count() > 0)

    def _progress(self, event) -> None:
        if event.phase != self._phase:
            self._offset = self._phase_end
            if event.phase in ("train_g", "train_h"):
                self.plot.mark(self._offset, "g" if event.phase == "train_g" else "h")
            self._phase = event.phase
        if event.phase in ("train_g", "train_h"):
            self._phase_end = self._offset + (event.total or event.step)
            self.plot.add(self._offset + event.step, event.metrics)

    def use_settings(self, settings: dict) -> None:
        """Fine-tune with ``settings`` (TrainConfig keywords); its step budget and time limit go into the boxes,
        so the numbers shown are the ones that run."""
        settings = dict(settings)
        budget = {key: settings.pop(key) for key in ("steps", "h_steps", "time_limit") if key in settings}
        self.session.train_settings = settings  # first: the boxes' own updates read it
        for key, box in (("steps", self.steps), ("h_steps", self.h_steps), ("time_limit", self.time_limit)):
            if key in budget:
                box.blockSignals(True)
                box.setValue(int(budget[key] or 0))
                box.blockSignals(False)
        self._show_budget()

    def _show_budget(self) -> None:
        """Grey out what an epoch budget in the settings replaces, and say the floor the time limit keeps."""
        settings = self.session.train_settings
        if any(key in settings for key in ("steps", "h_steps", "time_limit")):
            self.use_settings(settings)  # the boxes take them (and call this again)
            return
        by_epochs = {"steps": "epochs" in settings, "h_steps": "epochs" in settings or "h_epochs" in settings}
        floor = int(settings.get("min_steps", _default_min_steps()))
        floors = []
        for key, box in (("steps", self.steps), ("h_steps", self.h_steps)):
            box.blockSignals(True)
            box.setEnabled(not by_epochs[key])
            box.setSpecialValueText("by epochs" if by_epochs[key] else "")
            if by_epochs[key]:  # the box's number is not used: say so instead of showing one
                box.setValue(box.minimum())
            box.blockSignals(False)
            floors.append(floor if by_epochs[key] else min(floor, box.value()))
        limited = bool(self.time_limit.value() and floor)
        self.budget_note.setText(f"Each stage (g / h) runs at least {floors[0]} / {floors[1]} steps, even past the "
                                 "time limit." if limited else "")
        self.budget_note.setVisible(limited)

    # ---------------------------------------------------------------- train

    def config(self):
        """The TrainConfig of the next run: the budget shown here, under the session's own settings."""
        from ..training import TrainConfig
        from ..training.config import budget_settings

        self._show_budget()  # settings given since the last refresh: the boxes show what runs
        limit = self.time_limit.value()
        return TrainConfig(**budget_settings(self.steps.value(), self.h_steps.value(), limit or None,
                                             self.session.train_settings))

    def start(self) -> bool:
        """Fine-tune on every accepted correction (loads SAM first if needed)."""
        session = self.session
        try:
            count = len(session.annotations)
        except ValueError as exc:
            notify.error("Reading the annotation folder", exc)
            return False
        if count == 0:  # before loading (and perhaps downloading) SAM
            notify.info("Accept at least one corrected mask first (section 4).")
            return False
        if session.sam is None:
            return self.segment_section.model_section.load(then=self.start)
        config = self.config()
        sam, store, init, annotations = session.sam, session.model_store, session.model, session.annotations
        cache_dir = session.embedding_dir()

        from ..class_sets import training_classes

        classes = training_classes(session.train_settings, init)  # None: the binary model

        def task(token):
            from ..sam.cache import EmbeddingCache
            from ..training import samples_from_arrays, train

            images, masks, names = annotations.arrays()  # read in the worker thread
            samples = samples_from_arrays(images, masks, names, classes=classes)  # class ids kept for a class model
            # Its own cache object (same folder): the segmenter may use the other one meanwhile.
            return (yield from train(sam, samples, config=config, init=init, store=store,
                                     cache=EmbeddingCache(sam, cache_dir), cancel=token))

        self.plot.clear()
        self._offset = self._phase_end = 0
        self._phase = None
        return self.runner.start(f"Fine-tuning on {plural(count, 'correction')}", task, self._trained)

    def _trained(self, result) -> None:
        """Use the new version if the store made it the active one; otherwise keep the model in use."""
        self.last_result = result
        session = self.session
        store = session.model_store
        activated = result.version is not None and store is not None and store.active == result.version
        dice = dice_text(result.model.metadata)
        if result.version is not None and not activated:  # a cancelled run that did not improve
            notify.info(f"Cancelled: still using {session.model_label}. Fine-tuning stopped before it improved; "
                        f"{result.version} is kept in the version list, not in use.")
            self.refresh()
            return
        label = result.version or result.path.name
        session.set_model(result.model, label, version=result.version)
        how = "cancelled — kept the best model so far" if result.cancelled else "done"
        per_class = per_class_text(result.model.metadata)
        notify.info(f"Fine-tuning {how}: now using {label}. " + (f"{dice[0].upper()}{dice[1:]}. " if dice else "")
                    + (f"{per_class}. " if per_class else "") + "Segmenting again.")
        self.refresh()
        self.segment_section.rerun()

    # ---------------------------------------------------------------- versions

    def selected_version(self) -> str | None:
        item = self.versions.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _use_clicked(self) -> None:
        version = self.selected_version()
        if version:
            self.use_version(version)

    def use_version(self, version: str) -> None:
        """Roll back (or forward) to ``version`` and segment the image again."""
        try:
            self.session.use_version(version)
        except (OSError, ValueError) as exc:
            notify.error(f"Switching to {version}", exc)
            return
        notify.info(f"Now using model {version}.")
        self.refresh()
        self.segment_section.rerun()


def _budget_boxes() -> tuple[QSpinBox, QSpinBox, QSpinBox]:
    """Spin boxes for the step budgets of g and h and the time limit, at the command line's defaults."""
    from ..jobs.defaults import DEFAULT_TIME_LIMIT
    from ..training.config import DEFAULT_H_STEPS, DEFAULT_STEPS

    steps, h_steps, limit = QSpinBox(), QSpinBox(), QSpinBox()
    steps.setRange(1, 100_000)
    steps.setValue(DEFAULT_STEPS)
    steps.setToolTip("Optimiser steps for g (stage 1); it stops earlier when the validation Dice stops improving")
    h_steps.setRange(0, 100_000)
    h_steps.setValue(DEFAULT_H_STEPS)
    h_steps.setToolTip("Optimiser steps for h (stage 2, g frozen); 0 skips h")
    limit.setRange(0, 24 * 3600)
    limit.setValue(int(DEFAULT_TIME_LIMIT))
    limit.setSuffix(" s")
    limit.setSpecialValueText("none")
    limit.setToolTip("Seconds of training for both stages, encoding excluded (g may use 70 % when h follows); "
                     "each stage still runs its floor of steps")
    return steps, h_steps, limit


def _default_min_steps() -> int:
    from ..training import TrainConfig

    return TrainConfig().min_steps


def _row(*widgets: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return row
