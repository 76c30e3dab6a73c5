"""Project: create or open a slide project, add slides, and reopen a slide where it was left.

Opening a slide of the project checks that its file is the one that was
added (one line when not), opens it with napari-autosam's reader, and the
Segment section then shows the labels stored in the project for it (as for
any big image, :func:`.slide_layers.show_stored`).  This section adds the
slide's accepted regions ("corrections") and review scores as box layers.
With a project open, model versions and corrections are the project's
(:meth:`.session.Session.set_project`).  The rules live in
:mod:`napari_autosam.project`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from . import notify

CORRECTIONS = "corrections"
REVIEW = "review"


def _rectangles(boxes) -> list[np.ndarray]:
    """Level-0 boxes ``(y0, y1, x0, x1)`` as napari rectangles (pixel edges, data coordinates of level 0)."""
    return [np.array([[y0 - 0.5, x0 - 0.5], [y1 - 0.5, x1 - 0.5]]) for y0, y1, x0, x1 in boxes]


class ProjectSection(QWidget):
    """The slides of the open project and the buttons to make, open and fill one."""

    def __init__(self, viewer, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.session = viewer, session
        self.new_button = QPushButton("New project…")
        self.open_button = QPushButton("Open project…")
        self.add_button = QPushButton("Add slides…")
        self.slide_button = QPushButton("Open slide")
        self.slide_list = QListWidget()
        self.slide_list.setToolTip("The project's slides; double-click one to open it with its labels and corrections")
        self.slide_list.itemDoubleClicked.connect(lambda item: self.open_slide(item.data(256)))
        self.note = QLabel("No project open: labels, corrections and models go to the data folder.")
        self.note.setWordWrap(True)
        self.new_button.setToolTip("Make a project folder: slides with their labels, corrections and models, kept "
                                   "across sessions (docs/projects.md)")
        self.open_button.setToolTip("Open a project folder: its corrections and model versions are used from now on")
        self.add_button.setToolTip("Add slide files to the open project")
        self.slide_button.setToolTip("Open the chosen slide with its labels, corrections and review scores")
        self.new_button.clicked.connect(self._new_clicked)
        self.open_button.clicked.connect(self._open_clicked)
        self.add_button.clicked.connect(self._add_clicked)
        self.slide_button.clicked.connect(self._slide_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        for button in (self.new_button, self.open_button, self.add_button):
            row.addWidget(button)
        layout.addLayout(row)
        layout.addWidget(self.slide_list)
        layout.addWidget(self.slide_button)
        layout.addWidget(self.note)
        self._refresh()

    @property
    def project(self):
        return self.session.project

    # ---------------------------------------------------------------- project

    def _new_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for the new project (empty or new)", str(Path.home()))
        if path:
            self.create_project(path)

    def _open_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Project folder", str(Path.home()))
        if path:
            self.open_project(path)

    def create_project(self, path: str | os.PathLike) -> bool:
        from ..project import Project

        try:
            project = Project.create(path)
        except (OSError, ValueError) as exc:
            notify.error("Creating the project", exc)
            return False
        return self._use(project)

    def open_project(self, path: str | os.PathLike) -> bool:
        from ..project import Project

        try:
            project = Project.open(path)
        except (OSError, ValueError) as exc:
            notify.error("Opening the project", exc)
            return False
        return self._use(project)

    def _use(self, project) -> bool:
        try:
            self.session.set_project(project)
        except (OSError, ValueError) as exc:  # e.g. a damaged active.json
            notify.error("Using the project's model", exc)
        self._refresh()
        return True

    # ---------------------------------------------------------------- slides

    def _add_clicked(self) -> None:
        if self.project is None:
            notify.info("Create or open a project first.")
            return
        paths, _ = QFileDialog.getOpenFileNames(self, "Slides to add", str(Path.home()))
        if paths:
            self.add_slides(paths)

    def add_slides(self, paths) -> list:
        """Add slide files to the open project; returns the project's slides they became."""
        if self.project is None:
            notify.info("Create or open a project first.")
            return []
        added = []
        for path in paths:
            try:
                added.append(self.project.add(path))
            except (OSError, ValueError) as exc:
                notify.error(f"Adding {Path(path).name}", exc)
        self._refresh()
        return added

    def _slide_clicked(self) -> None:
        item = self.slide_list.currentItem()
        if item is None:
            notify.info("Choose a slide of the project first.")
            return
        self.open_slide(item.data(256))

    def open_slide(self, key: str):
        """Open a slide of the project where it was left; returns its image layer (None: refused, said why)."""
        if self.project is None:
            return None
        try:
            path = self.project.check(key)
        except (OSError, ValueError) as exc:  # a replaced or missing slide: one line saying what changed
            notify.error("Opening the slide", exc)
            return None
        layers = self.viewer.open(str(path), plugin="napari-autosam")
        image = layers[0] if layers else None
        if image is not None:
            self.show_boxes(key, image)
        self._refresh()
        return image

    def show_boxes(self, key: str, image) -> None:
        """The slide's accepted regions and review scores as rectangle layers over ``image``."""
        slide = self.project.slide(key)
        corrections = self.project.correction_boxes(slide.id)
        review = self.project.review_regions(slide.id)
        placement = {"scale": tuple(image.scale[-2:]), "translate": tuple(image.translate[-2:])}
        if corrections:
            self.viewer.add_shapes(_rectangles(corrections), shape_type="rectangle", edge_color="lime",
                                   face_color="transparent", edge_width=2, name=f"{CORRECTIONS} [{image.name}]",
                                   metadata={"project_slide": slide.id}, **placement)
        if review:
            scores = np.array([score for _, score in review])
            self.viewer.add_shapes(_rectangles([box for box, _ in review]), shape_type="rectangle",
                                   edge_color="orange", face_color="transparent", edge_width=2,
                                   properties={"score": scores}, text={"string": "{score:.2f}", "color": "orange"},
                                   name=f"{REVIEW} [{image.name}]", metadata={"project_slide": slide.id}, **placement)

    # ---------------------------------------------------------------- display

    def _refresh(self) -> None:
        self.slide_list.clear()
        project = self.project
        self.add_button.setEnabled(project is not None)
        self.slide_button.setEnabled(project is not None)
        if project is None:
            return
        try:
            slides = project.slides()
            models = project.active_models()
        except (OSError, ValueError) as exc:
            self.note.setText(f"Project {project.root}: {notify.describe(exc)}")
            return
        for slide in slides:
            item = QListWidgetItem(f"{slide.name}  ({len(project.corrections(slide.id))} corrections)")
            item.setData(256, slide.id)  # Qt.UserRole
            item.setToolTip(slide.path)
            self.slide_list.addItem(item)
        model = ", ".join(f"{version} ({lineage})" for lineage, version in models.items()) or "none trained yet"
        self.note.setText(f"Project {project.root}: {len(slides)} slide(s); active model: {model}. Labels, "
                          "corrections and model versions are kept in the project.")
