"""Section 1, Model: which SAM, on which device, and which prompt generator g."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..progress import cancellable, single_step
from . import notify
from .session import Session
from .workers import ProgressPanel, TaskRunner

#: (item text, value, tooltip) of the SAM choices; "file" asks for a checkpoint file.  The texts
#: are short so the combo shows them whole in a narrow dock.
SAM_CHOICES = [
    ("ViT-B (375 MB)", "vit_b", "The official SAM ViT-B: the fastest, downloaded once (375 MB)"),
    ("ViT-L (1.2 GB)", "vit_l", "The official SAM ViT-L, downloaded once (1.2 GB)"),
    ("ViT-H (2.6 GB)", "vit_h", "The official SAM ViT-H: the most accurate, downloaded once (2.6 GB)"),
    ("tiny (tests, demo)", "tiny", "A small built-in SAM with random, fixed weights: for tests and the offline demo "
     "only, its masks mean nothing until g is trained"),
    ("Checkpoint file…", "file", "A SAM checkpoint (.pth) you already have"),
]


def display_name(name_or_path: str) -> str:
    """How a SAM is named in titles and notifications: ``"ViT-B"`` (not ``vit_b``: napari's collapsed
    toast clips the underscore, so it reads "vit b"), ``"tiny"``, or a checkpoint's file name."""
    for text, value, _tip in SAM_CHOICES:
        if value == name_or_path and value != "file":
            return text.split(" (")[0]
    return Path(name_or_path).name


def _label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class ModelSection(QWidget):
    """Choose and load SAM, pick the device, and create / load / save the prompt generator."""

    def __init__(self, session: Session, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = runner
        self.sam_file: str | None = None

        self.sam_combo = QComboBox()
        for i, (text, value, tip) in enumerate(SAM_CHOICES):
            self.sam_combo.addItem(text, value)
            self.sam_combo.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self.sam_combo.setToolTip(
            "The frozen Segment Anything model. Official checkpoints are downloaded once (with a checksum) "
            "into the cache folder; 'Checkpoint file…' uses a .pth file you already have.")
        self.sam_combo.activated.connect(self._sam_chosen)
        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Where SAM and g run: 'auto' picks a CUDA GPU, then Apple MPS, then the CPU.")
        from ..device import available_devices

        self.device_combo.addItems(["auto", *available_devices()])
        self.load_button = QPushButton("Load SAM")
        self.load_button.setToolTip("Load (and if needed download) the chosen SAM in the background")
        self.load_button.clicked.connect(lambda: self.load())
        self.sam_status = _label("No SAM loaded. Segmenting loads the chosen one.")
        self.sam_status.setToolTip("The SAM in use and its checkpoint file")

        self.model_status = _label(session.describe_model())
        self.model_status.setToolTip("The prompt generator g (and surrogate decoder h) in use")
        self.new_button = QPushButton("New")
        self.new_button.setToolTip("Start again from an untrained prompt generator (saved versions are kept)")
        self.new_button.clicked.connect(self.new_model)
        self.open_button = QPushButton("Load…")
        self.open_button.setToolTip("Use a prompt-generator checkpoint (.safetensors) saved earlier or shared by a colleague")
        self.open_button.clicked.connect(self._open_clicked)
        self.save_button = QPushButton("Save as…")
        self.save_button.setToolTip("Save the prompt generator in use to a .safetensors file of your choice")
        self.save_button.clicked.connect(self._save_clicked)

        self.folder_label = _label()
        self.folder_label.setToolTip("Model versions and accepted corrections are kept here (never in the working folder)")
        self.folder_button = QPushButton("Change…")
        self.folder_button.setToolTip("Keep model versions and accepted corrections in another folder")
        self.folder_button.clicked.connect(self._folder_clicked)

        self._lay_out(runner)
        session.model_changed.connect(self._refresh)
        session.sam_changed.connect(self._refresh)
        self._refresh()

    def _lay_out(self, runner: TaskRunner) -> None:
        """SAM and device on top, then its status and progress, then the prompt generator and the folder."""
        form = QFormLayout()
        form.addRow("SAM", self.sam_combo)
        form.addRow("Device", self.device_combo)
        buttons = QHBoxLayout()
        for button in (self.new_button, self.open_button, self.save_button):
            buttons.addWidget(button)
        folder = QHBoxLayout()
        folder.addWidget(self.folder_label, 1)
        folder.addWidget(self.folder_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.load_button)
        layout.addWidget(self.sam_status)
        layout.addWidget(ProgressPanel(runner))
        layout.addWidget(_label("<b>Prompt generator g</b>"))
        layout.addWidget(self.model_status)
        layout.addLayout(buttons)
        layout.addLayout(folder)

    # ---------------------------------------------------------------- SAM

    @property
    def sam_choice(self) -> str:
        value = self.sam_combo.currentData()
        return self.sam_file if value == "file" else value

    def select_sam(self, name_or_path: str) -> None:
        """Pick a SAM by variant name or checkpoint path (also used by tests and the demo)."""
        index = self.sam_combo.findData(name_or_path)
        if index < 0:
            self.sam_file = str(name_or_path)
            index = self.sam_combo.findData("file")
            self.sam_combo.setItemText(index, f"File: {Path(name_or_path).name}")
        self.sam_combo.setCurrentIndex(index)

    def _sam_chosen(self, index: int) -> None:
        if self.sam_combo.itemData(index) != "file":
            return
        path, _ = QFileDialog.getOpenFileName(self, "SAM checkpoint", "", "PyTorch checkpoints (*.pth *.pt);;All files (*)")
        if path:
            self.select_sam(path)
        elif not self.sam_file:
            self.sam_combo.setCurrentIndex(0)

    def load(self, then: Callable[[], None] | None = None) -> bool:
        """Load the chosen SAM in the background; call ``then()`` once it is in use."""
        from ..sam.registry import load_sam

        name, device = self.sam_choice, self.device_combo.currentText()
        if not name:
            notify.warning("Choose a SAM checkpoint file first.")
            return False

        def done(sam) -> None:
            self.session.set_sam(sam, name)
            if then is not None:
                then()

        def failed(exc) -> None:  # the toast shows one line; the reason in full stays here
            self.sam_status.setText(f"Could not load SAM {shown}: {notify.describe(exc)}")

        shown = display_name(name)
        return self.runner.start(f"Loading SAM {shown}", lambda token: cancellable(load_sam(name, device=device), token),
                                 done, on_error=failed)

    # ---------------------------------------------------------------- g

    def new_model(self) -> None:
        if self.session.sam is None:
            notify.info("Load a SAM first; a new prompt generator is then made for it.")
            return
        self.session.set_model(None, "untrained (new)")

    def _open_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Prompt-generator checkpoint", str(self.session.models_root),
                                              "napari-autosam checkpoints (*.safetensors)")
        if path:
            self.open_model(path)

    def open_model(self, path: str) -> bool:
        """Load a g/h checkpoint file in the background and use it."""
        from ..models.checkpoint import load_checkpoint
        from ..sam.registry import check_sam_variant

        if self.session.sam is None:
            return self.load(then=lambda: self.open_model(path))
        sam = self.session.sam

        def read():
            checkpoint = load_checkpoint(path)
            check_sam_variant(checkpoint.sam_variant, sam, Path(path).name)  # the same check as training's
            return checkpoint

        def done(checkpoint) -> None:
            self.session.set_model(checkpoint, Path(path).name)

        return self.runner.start("Loading prompt generator",
                                 lambda token: single_step("load", f"Reading {Path(path).name}", read), done)

    def _save_clicked(self) -> None:
        if self.session.model is None:
            notify.info("Nothing to save yet: the prompt generator is untrained. Fine-tune it first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save prompt generator", str(Path.home() / "autosam.safetensors"),
                                              "napari-autosam checkpoints (*.safetensors)")
        if path:
            self.save_model(path)

    def save_model(self, path: str) -> Path:
        from ..models.checkpoint import save_copy

        path = save_copy(self.session.model, path)
        notify.info(f"Saved the prompt generator to {path}")
        return path

    def _folder_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for model versions and corrections", str(self.session.root))
        if path:
            self.session.set_root(path)
            self._refresh()

    # ---------------------------------------------------------------- display

    def _refresh(self) -> None:
        from ..sam.registry import sam_identity

        sam = self.session.sam
        if sam is not None:
            device = next(sam.parameters()).device
            identity = sam_identity(sam)
            path = identity.checkpoint_path
            self.sam_status.setText(f"Loaded: SAM {identity.variant} on {device}"
                                    + (f" — {Path(path).name}" if path else ""))
            self.sam_status.setToolTip(str(path) if path else "")
        self.model_status.setText(self.session.describe_model())
        self.save_button.setEnabled(self.session.model is not None)
        self.folder_label.setText(f"Data folder: {self.session.root}")
