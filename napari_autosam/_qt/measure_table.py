"""The measurement table: measure the objects of the segmented image, sort, filter, find, colour, plot.

Wires controls to :mod:`napari_autosam.measure` (the engine measures; this
file only shows).  "Measure" measures the image's instances layer (else the
connected regions of its AutoSAM mask) in the background, stores the table
as the labels layer's ``features`` and lists it here; selecting a row centres
the viewer on that object and outlines it in a "measured object" shapes
layer; "Colour by" paints the objects by a column; the histogram shows the
chosen column.  The table is measured again after a correction is accepted.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QAbstractTableModel, Qt, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from . import notify
from .layers import current_plane, find_output

HIGHLIGHT_LAYER = "measured object"
#: Columns shown first; the others follow in the table's order.
_FIRST = ("object_id", "class")


class FrameModel(QAbstractTableModel):
    """A read-only Qt model over a pandas DataFrame; sorting sorts the frame."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.frame = None

    def set_frame(self, frame) -> None:
        self.beginResetModel()
        self.frame = frame.reset_index(drop=True) if frame is not None else None
        self.endResetModel()

    def rowCount(self, parent=None) -> int:  # noqa: N802 (Qt's name)
        return 0 if self.frame is None or (parent is not None and parent.isValid()) else len(self.frame)

    def columnCount(self, parent=None) -> int:  # noqa: N802 (Qt's name)
        return 0 if self.frame is None or (parent is not None and parent.isValid()) else len(self.frame.columns)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole or self.frame is None:
            return None
        value = self.frame.iat[index.row(), index.column()]
        return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 (Qt's name)
        if role != Qt.ItemDataRole.DisplayRole or self.frame is None:
            return None
        return str(self.frame.columns[section]) if orientation == Qt.Orientation.Horizontal else str(section + 1)

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        if self.frame is None:
            return
        self.layoutAboutToBeChanged.emit()
        name = self.frame.columns[column]
        ascending = order == Qt.SortOrder.AscendingOrder
        self.frame = self.frame.sort_values(name, ascending=ascending, kind="stable").reset_index(drop=True)
        self.layoutChanged.emit()


class MeasureTable(QWidget):
    """Measure the current image's objects and browse them (see the module docstring).

    Signals
    -------
    measured(str) : the name of the labels layer whose features were just set
    """

    measured = Signal(str)

    def __init__(self, viewer, session, segment_section, runner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.session, self.segment_section, self.runner = viewer, session, segment_section, runner
        self.result = None
        self.layer = None
        self.measure_button = QPushButton("Measure objects")
        self.measure_button.setToolTip("Measure every object of the segmented image: area, shape, intensities; "
                                       "µm when the image knows its µm/px")
        self.measure_button.clicked.connect(lambda: self.measure())
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter, e.g. area_um2 > 20 and solidity > 0.9")
        self.filter_edit.returnPressed.connect(self.apply_filter)
        self.colour_combo = QComboBox()
        self.colour_combo.setToolTip("Colour the objects by this column (and show its histogram)")
        self.colour_combo.currentTextChanged.connect(self.colour_by)
        self.histogram = QLabel()
        self.note = QLabel("Segment an image, then measure its objects.")
        self.note.setWordWrap(True)
        self.model = FrameModel(self)
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setCornerButtonEnabled(False)  # "select all" means nothing when one object is selected at a time
        self.view.setMinimumHeight(180)
        self.view.selectionModel().selectionChanged.connect(lambda *args: self._row_selected())
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.measure_button)
        row.addWidget(QLabel("Colour by"))
        row.addWidget(self.colour_combo, 1)
        layout.addLayout(row)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.view)
        layout.addWidget(self.histogram)
        layout.addWidget(self.note)
        session.annotations_changed.connect(self._refresh_after_correction)

    # ---------------------------------------------------------------- measuring

    def _labels_layer(self, target):
        """The instances layer of ``target``, else its AutoSAM mask (objects: connected regions)."""
        instances = find_output(self.viewer, target.name, "instances")
        if instances is not None and (instances.multiscale or np.asarray(instances.data).any()):
            return instances, False
        return find_output(self.viewer, target.name, "autosam"), True

    def measure(self) -> bool:
        """Measure the shown plane of the current image's objects in the background."""
        from ..measure import measure_sources
        from ..measure.inputs import components
        from ..progress import cancellable

        target = self.segment_section.target()
        if target is None:
            return False
        layer, is_mask = self._labels_layer(target)
        if layer is None:
            notify.info("Nothing to measure yet: segment the image first.")
            return False
        z = current_plane(self.viewer, target)
        labels = layer.data[0] if layer.multiscale else layer.data
        labels = labels[z] if labels.ndim == 3 else labels
        image = None if layer.multiscale else target.layout.read(target.data, z, (0, labels.shape[-2], 0,
                                                                                 labels.shape[-1]))
        classes = None
        info = layer.metadata.get("autosam", {})
        downsample = float(info.get("downsample", 1.0))
        mpp = _layer_mpp(target.layer, downsample)
        if is_mask and not layer.multiscale:  # the mask's values are classes: its objects get a layer of their own
            labels, classes = components(np.asarray(labels))
            layer = self._objects_layer(layer, labels, target.name)
            z = 0
        self.layer, self._z = layer, z

        def make_task(token):
            return cancellable(measure_sources(labels, image, mpp=mpp, downsample=downsample, classes=classes), token)

        return self.runner.start(f"Measuring the objects of {target.name}", make_task, self._show)

    def _objects_layer(self, mask_layer, objects: np.ndarray, image_name: str):
        """The "objects" labels layer of an image (its mask's connected regions), placed like the mask."""
        name = f"objects [{image_name}]"
        scale, translate = list(mask_layer.scale[-2:]), list(mask_layer.translate[-2:])
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data, layer.scale, layer.translate = objects, scale, translate
            return layer
        return self.viewer.add_labels(objects, name=name, scale=scale, translate=translate, opacity=0.6)

    def _refresh_after_correction(self) -> None:
        if self.result is not None and self.layer is not None and self.layer in self.viewer.layers:
            self.measure()

    def _show(self, result) -> None:
        self.result = result
        table = result.table
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.features = table.assign(index=table["object_id"])
        ordered = [*_FIRST, *[c for c in table.columns if c not in _FIRST]]
        self.model.set_frame(table[ordered])
        self.view.resizeColumnsToContents()
        numeric = [c for c in table.columns if c not in ("object_id", "class") and not c.startswith("bbox")]
        self.colour_combo.blockSignals(True)
        self.colour_combo.clear()
        self.colour_combo.addItems(["(label colours)", *numeric])
        self.colour_combo.blockSignals(False)
        self.note.setText(result.summary_text)
        self.measured.emit(self.layer.name if self.layer is not None else "")

    # ---------------------------------------------------------------- browsing

    def apply_filter(self) -> None:
        """Show the rows matching the filter (a pandas query over the columns); empty: all rows."""
        if self.result is None:
            return
        text = self.filter_edit.text().strip()
        try:
            shown = self.result.table.query(text) if text else self.result.table
        except Exception as exc:  # pandas raises many kinds for a mistyped query; say it in one line
            self.note.setText(f"Filter not understood: {exc}")
            return
        self.model.set_frame(shown[[*_FIRST, *[c for c in shown.columns if c not in _FIRST]]])
        self.note.setText(f"{len(shown)} of {len(self.result.table)} objects shown. {self.result.summary_text}")

    def select_row(self, row: int) -> None:
        self.view.selectRow(row)

    def _row_selected(self) -> None:
        rows = self.view.selectionModel().selectedRows()
        if not rows or self.model.frame is None:
            return
        self.go_to(self.model.frame.iloc[rows[0].row()])

    def go_to(self, row) -> None:
        """Centre the viewer on an object (a table row) and outline it."""
        layer = self.layer
        if layer is None or layer not in self.viewer.layers:
            return
        calibration = self.result.calibration
        cy, cx = calibration.to_working(row["centroid_y_px"], row["centroid_x_px"])
        y0, x0 = calibration.to_working(row["bbox_y0_px"], row["bbox_x0_px"])
        y1, x1 = calibration.to_working(row["bbox_y1_px"], row["bbox_x1_px"])
        lead = [self._z] if layer.ndim == 3 else []
        world = np.asarray(layer.data_to_world([*lead, cy, cx]))
        camera(self.viewer).center = tuple(world[-2:]) if self.viewer.dims.ndisplay == 2 else tuple(world)
        corners = np.array([[*lead, y, x] for y, x in ((y0, x0), (y0, x1), (y1, x1), (y1, x0))])
        box = np.array([layer.data_to_world(c) for c in corners])
        if HIGHLIGHT_LAYER in self.viewer.layers:
            self.viewer.layers[HIGHLIGHT_LAYER].data = [box]
        else:
            self.viewer.add_shapes([box], shape_type="rectangle", edge_color="yellow", face_color="transparent",
                                   edge_width=2, name=HIGHLIGHT_LAYER)
        layer.selected_label = int(row["object_id"])

    def colour_by(self, column: str) -> None:
        """Paint the objects by ``column`` (low: dark blue … high: yellow) and show its histogram."""
        from napari.utils.colormaps import DirectLabelColormap

        from ..measure.report import histogram_picture, ramp_colours

        if self.result is None or self.layer is None or self.layer not in self.viewer.layers:
            return
        table = self.result.table
        if column not in table.columns:
            self.layer.colormap = self._label_colours if hasattr(self, "_label_colours") else self.layer.colormap
            self.histogram.clear()
            return
        if not hasattr(self, "_label_colours"):
            self._label_colours = self.layer.colormap
        colours = ramp_colours(table[column].to_numpy())
        mapping = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
        mapping.update({int(k): tuple(c) for k, c in zip(table["object_id"], colours)})
        self.layer.colormap = DirectLabelColormap(color_dict=mapping)
        picture = np.ascontiguousarray(histogram_picture(table[column].to_numpy()))
        image = QImage(picture.data, picture.shape[1], picture.shape[0], 3 * picture.shape[1],
                       QImage.Format.Format_RGB888)
        self.histogram.setPixmap(QPixmap.fromImage(image.copy()))
        self.histogram.setToolTip(f"Histogram of {column} ({len(table)} objects)")


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def _layer_mpp(image_layer, downsample: float) -> float | None:
    """µm per label pixel from the image layer's slide metadata (its level-0 µm/px × the labels' downsample)."""
    meta = image_layer.metadata if isinstance(image_layer.metadata, dict) else {}
    mpp = meta.get("mpp")
    if isinstance(mpp, (list, tuple)) and mpp and mpp[0]:
        return float(mpp[0]) * downsample
    if isinstance(mpp, (int, float)) and mpp > 0:
        return float(mpp) * downsample
    return None

