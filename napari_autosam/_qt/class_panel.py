"""The class picker: choose the class to paint, load a classes file, colour the labels layers by class.

Only wiring: the classes, their colours and the picker's entries come from
:mod:`napari_autosam.class_sets`.  Choosing a class sets the active Labels
layer's ``selected_label`` (napari's brush and fill then paint that class);
loading a classes file makes the next fine-tuning train a class model with
them (``session.train_settings["classes"]``) and colours the output layers.
"""

from __future__ import annotations

from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from . import notify


class ClassPicker(QWidget):
    """A combo box of the classes (or "foreground") and a "Load classes…" button."""

    def __init__(self, viewer, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.session = viewer, session
        self.combo = QComboBox()
        self.combo.setToolTip("the class napari's brush and fill paint (the selected label of the active layer)")
        self.load_button = QPushButton("Load classes…")
        self.load_button.setToolTip("a classes file: id,name[,#rrggbb] lines, JSON, or a QuPath GeoJSON export")
        row = QHBoxLayout()
        row.addWidget(QLabel("Class:"))
        row.addWidget(self.combo, 1)
        row.addWidget(self.load_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        self.combo.currentIndexChanged.connect(self._picked)
        self.load_button.clicked.connect(self._load_clicked)
        self.refresh()

    @property
    def classes(self):
        from ..class_sets import training_classes

        return training_classes(self.session.train_settings, self.session.model)

    def refresh(self) -> None:
        """Entries from the loaded classes (or the active model's); colours on the labels layers."""
        from ..class_sets import class_choices

        self.combo.blockSignals(True)
        self.combo.clear()
        for text, value in class_choices(self.classes):
            self.combo.addItem(text, value)
        self.combo.blockSignals(False)
        self.color_layers()

    def load(self, path: str) -> bool:
        """Use the classes of ``path`` for painting and the next fine-tuning."""
        from ..class_sets import ClassesError, read_classes

        try:
            classes = read_classes(path)
        except ClassesError as exc:
            notify.error("Reading the classes file", exc)
            return False
        self.session.train_settings["classes"] = tuple(classes.to_metadata())
        self.refresh()
        return True

    def color_layers(self) -> None:
        """Class colours on the AutoSAM layers (the ones corrections are painted and accepted in)."""
        from ..class_sets import label_colors
        from .layers import role_of

        classes = self.classes
        if not classes:
            return
        colormap = DirectLabelColormap(color_dict=label_colors(classes))
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and role_of(layer)[1] == "autosam":
                layer.colormap = colormap

    def _picked(self, index: int) -> None:
        value = self.combo.itemData(index)
        layer = self.viewer.layers.selection.active
        if value is not None and isinstance(layer, Labels):
            layer.selected_label = int(value)

    def _load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Classes file", "",
                                              "Classes (*.csv *.txt *.tsv *.json *.geojson);;All files (*)")
        if path:
            self.load(path)
