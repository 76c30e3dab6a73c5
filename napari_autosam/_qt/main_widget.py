"""The AutoSAM dock widget: the whole loop in five sections, top to bottom (after the slide project, if any).

1. Model — SAM, device, prompt generator g (new / load / save), data folder
2. Segment — AutoSAM and h(g(I)) on a slice, a stack, an image or the visible region
3. Compare — h(g(I)) beside AutoSAM, where they disagree, their Dice
4. Correct — napari's label tools or SAM point/box prompts; accept the result
5. Fine-tune — train on accepted corrections in the background; versions and rollback
6. Review — regions sorted by how unsure the model is; go to the next one, correct, accept

Four background runners (loading models, segmenting, fine-tuning, answering
SAM prompts), each running one task at a time, so users keep segmenting and
correcting while g trains.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QSize, Qt, QTimer
from qtpy.QtWidgets import QComboBox, QGroupBox, QLabel, QScrollArea, QVBoxLayout, QWidget

from . import avoid_triton_llvm_clash

avoid_triton_llvm_clash()  # before any section pulls in torch (see napari_autosam._qt)

from .compare_section import CompareSection  # noqa: E402
from .correct_section import CorrectSection
from .finetune_section import FinetuneSection
from .measure_table import MeasureTable
from .model_section import ModelSection
from .project_section import ProjectSection
from .region_panel import RegionEditor
from .review_section import ReviewSection
from .segment_section import SegmentSection
from .session import Session
from .workers import TaskRunner

#: Keyboard shortcuts: (key, what, method path).  Shift+Alt+<letter> keys napari leaves free
#: (napari itself uses Shift+Alt+S / C / T and Shift+Alt+Up / Down); a test checks for clashes.
SHORTCUTS = [
    ("Shift-Alt-R", "Segment (run)", "segment_section.segment"),
    ("Shift-Alt-D", "Compare h(g(I)) and AutoSAM on / off", "compare_section.toggle"),
    ("Shift-Alt-P", "Add positive SAM points", "correct_section.start_points_positive"),
    ("Shift-Alt-N", "Add negative SAM points", "correct_section.start_points_negative"),
    ("Shift-Alt-B", "Draw a SAM box", "correct_section.start_box"),
    ("Shift-Alt-O", "New object (keep the current one)", "correct_section.new_object"),
    ("Shift-Alt-A", "Accept correction", "correct_section.accept"),
    ("Shift-Alt-F", "Fine-tune", "finetune_section.start"),
    ("Shift-Alt-X", "Cancel the running tasks", "cancel_all"),
]


def _pretty(key: str) -> str:
    return key.replace("-", "+")


class _Column(QWidget):
    """The scrolled content.  Qt's height-for-width estimate of nested layouts with wrapped
    labels comes out too small, and the scroll area then squeezes the sections (cutting lines
    off); so the content keeps its minimum height at the sum of its sections' needs."""

    def _needed(self, width: int) -> int:
        layout = self.layout()
        margins = layout.contentsMargins()
        inner = max(1, width - margins.left() - margins.right())
        heights = []
        for i in range(layout.count()):
            child = layout.itemAt(i).widget()
            if child is None or not child.isVisibleTo(self):
                continue
            hint = child.sizeHint().height()
            heights.append(max(hint, child.heightForWidth(inner)) if child.hasHeightForWidth() else hint)
        return sum(heights) + layout.spacing() * max(0, len(heights) - 1) + margins.top() + margins.bottom()

    def event(self, event) -> bool:
        handled = super().event(event)
        if event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.Resize, QEvent.Type.Show):
            needed = self._needed(self.width())
            if needed != self.minimumHeight():
                self.setMinimumHeight(needed)
        return handled


def unbind_keys(viewer) -> None:
    for key, _what, _path in SHORTCUTS:
        try:
            viewer.bind_key(key, None)
        except (KeyError, ValueError, RuntimeError):
            pass


class AutoSAMWidget(QWidget):
    """Segment with AutoSAM, compare with h(g(I)), correct, and fine-tune — inside napari."""

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = Session(self)
        self.model_runner = TaskRunner(self)
        self.segment_runner = TaskRunner(self)
        self.train_runner = TaskRunner(self)
        self.model_section = ModelSection(self.session, self.model_runner)
        self.segment_section = SegmentSection(napari_viewer, self.session, self.segment_runner, self.model_section)
        self.compare_section = CompareSection(napari_viewer, self.segment_section)
        self.correct_section = CorrectSection(napari_viewer, self.session, self.segment_section)
        self.correct_section.start_points_positive = lambda: self.correct_section.start_points(True)
        self.correct_section.start_points_negative = lambda: self.correct_section.start_points(False)
        self.region_editor = RegionEditor(napari_viewer, self.session, self.segment_section, self.correct_section)
        self.correct_section.layout().addWidget(self.region_editor)  # "Edit region" for big images
        from .class_panel import ClassPicker

        self.class_picker = ClassPicker(napari_viewer, self.session)  # the class to paint; classes for fine-tuning
        self.correct_section.layout().addWidget(self.class_picker)
        self.finetune_section = FinetuneSection(napari_viewer, self.session, self.segment_section, self.train_runner)
        self.segment_section.view_locked = lambda: self.compare_section.active
        self.correct_section.before_editing = self.compare_section.leave
        self.review_section = ReviewSection(napari_viewer, self.session, self.segment_section, self.correct_section)
        self.project_section = ProjectSection(napari_viewer, self.session)  # slides kept across sessions
        self.measure_runner = TaskRunner(self)
        self.measure_section = MeasureTable(napari_viewer, self.session, self.segment_section, self.measure_runner)

        self._lay_out_sections()
        self.setMinimumWidth(360)
        self._bind_keys()
        self._follow_training()
        viewer = napari_viewer
        self.destroyed.connect(lambda *args: unbind_keys(viewer))

    def _lay_out_sections(self) -> None:
        """The numbered sections in titled boxes, the shortcuts below, all in one vertical scroll area."""
        content = _Column()
        column = QVBoxLayout(content)
        for title, section in (
            ("Project", self.project_section),
            ("1  Model", self.model_section),
            ("2  Segment", self.segment_section),
            ("3  Compare", self.compare_section),
            ("4  Correct", self.correct_section),
            ("5  Fine-tune", self.finetune_section),
            ("6  Review", self.review_section),
            ("7  Measure", self.measure_section),
        ):
            box = QGroupBox(title)
            inner = QVBoxLayout(box)
            inner.addWidget(section)
            column.addWidget(box)
            section.box = box
        self.help = QLabel(self.shortcut_help())
        self.help.setWordWrap(True)
        self.help.setToolTip("Keyboard shortcuts of this plugin (they work while the canvas has the focus)")
        help_box = QGroupBox("Shortcuts")
        QVBoxLayout(help_box).addWidget(self.help)
        column.addWidget(help_box)
        column.addStretch(1)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for combo in content.findChildren(QComboBox):  # long item texts must not widen the dock
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

    def _follow_training(self) -> None:
        """Bring the fine-tuning progress and its live plot into view when a training starts."""
        # minutes of fine-tuning: its progress and live plot come into view (they sit below the fold), once the
        # progress bar has been shown and laid out
        self._show_training = QTimer(self, singleShot=True, interval=50)
        self._show_training.timeout.connect(
            lambda: self.show_section(self.finetune_section.progress_panel, self.finetune_section.plot))
        self._show_pending = False  # shown again at the first progress line, which makes the panel taller

        def show_training(first: bool) -> None:
            if first or self._show_pending:
                self._show_pending = first
                self._show_training.start()

        self.train_runner.started.connect(lambda _title: show_training(True))
        self.train_runner.progress.connect(lambda _event: show_training(False))

    # ---------------------------------------------------------------- shortcuts

    @staticmethod
    def shortcut_help() -> str:
        return "<br>".join(f"<b>{_pretty(key)}</b> — {what}" for key, what, _ in SHORTCUTS)

    def _resolve(self, path: str):
        target = self
        for part in path.split("."):
            target = getattr(target, part)
        return target

    def _bind_keys(self) -> None:
        for key, _what, path in SHORTCUTS:
            action = self._resolve(path)
            self.viewer.bind_key(key, lambda viewer, action=action: action(), overwrite=True)

    @property
    def runners(self) -> list[TaskRunner]:
        return [self.model_runner, self.segment_runner, self.train_runner, self.correct_section.prompt_runner,
                self.measure_runner]

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(420, 900)

    def show_section(self, *parts: QWidget) -> None:
        """Scroll the dock so that ``parts`` (e.g. ``self.finetune_section``, or widgets in it) are in view;
        where they do not all fit, the first ones win."""
        for part in reversed(parts):
            self.scroll.ensureWidgetVisible(getattr(part, "box", part), 0, 0)

    def cancel_all(self) -> None:
        for runner in self.runners:
            runner.cancel()

    # ---------------------------------------------------------------- lifecycle

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.cancel_all()
        unbind_keys(self.viewer)
        super().closeEvent(event)
