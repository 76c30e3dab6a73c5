"""A small live line plot drawn with QPainter: training loss and validation Dice.

matplotlib is an optional dependency and redrawing a figure costs tens of
milliseconds on the GUI thread; this widget repaints in well under one.
Loss is drawn against the left axis (auto-scaled), Dice against the right
one (fixed 0..1); each axis is labelled in its curves' colour.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Series name → (colour, axis).  "left" is auto-scaled, "right" is 0..1.
SERIES = {
    "loss": ("#f0a030", "left"),
    "val_dice_autosam": ("#30c0f0", "right"),
    "val_dice_h": ("#e050e0", "right"),
}
LABELS = {"loss": "loss", "val_dice_autosam": "val Dice AutoSAM", "val_dice_h": "val Dice h(g(I))"}


class LivePlot(QWidget):
    """Curves of training metrics against the training step; call :meth:`add` for each report."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Training loss (left axis) and validation Dice of AutoSAM and h(g(I)) (right axis, 0–1)")
        self.points: dict[str, list[tuple[float, float]]] = {name: [] for name in SERIES}
        self.markers: list[tuple[float, str]] = []  # phase changes, e.g. "h" where h starts training

    def clear(self) -> None:
        self.points = {name: [] for name in SERIES}
        self.markers = []
        self.update()

    def add(self, x: float, metrics: dict[str, float]) -> None:
        """Append the values of ``metrics`` whose names are in :data:`SERIES` at position ``x``."""
        for name, value in metrics.items():
            if name in self.points and value is not None and math.isfinite(float(value)):
                self.points[name].append((float(x), float(value)))
        self.update()

    def mark(self, x: float, text: str) -> None:
        self.markers.append((float(x), text))
        self.update()

    def _x_range(self) -> tuple[float, float]:
        xs = [x for pts in self.points.values() for x, _ in pts] + [x for x, _ in self.markers]
        if not xs:
            return 0.0, 1.0
        low, high = min(xs), max(xs)
        return low, high if high > low else low + 1.0

    def _loss_range(self) -> tuple[float, float]:
        values = [y for _, y in self.points["loss"]]
        if not values:
            return 0.0, 1.0
        high = max(values)
        return 0.0, high * 1.05 if high > 0 else 1.0

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        text_color = self.palette().windowText().color()
        area = QRectF(self.rect()).adjusted(44, 8, -30, -30)
        painter.setPen(QPen(QColor(text_color), 1))
        painter.drawRect(area)
        x0, x1 = self._x_range()
        l0, l1 = self._loss_range()

        def to_point(x: float, y: float, axis: str) -> QPointF:
            fy = (y - l0) / (l1 - l0) if axis == "left" else y
            fx = (x - x0) / (x1 - x0)
            return QPointF(area.left() + fx * area.width(), area.bottom() - min(1.0, max(0.0, fy)) * area.height())

        painter.drawText(QRectF(14, area.top() - 6, 28, 14), Qt.AlignmentFlag.AlignRight, f"{l1:.2g}")
        painter.drawText(QRectF(14, area.bottom() - 8, 28, 14), Qt.AlignmentFlag.AlignRight, "0")
        _axis_label(painter, "loss", 12, area.center().y(), SERIES["loss"][0])
        _axis_label(painter, "Dice", area.right() + 28, area.center().y(), SERIES["val_dice_autosam"][0])
        painter.setPen(QPen(QColor(text_color), 1))
        painter.drawText(QRectF(area.right() + 3, area.top() - 6, 30, 14), Qt.AlignmentFlag.AlignLeft, "1")
        painter.drawText(QRectF(area.right() + 3, area.bottom() - 8, 30, 14), Qt.AlignmentFlag.AlignLeft, "0")
        painter.drawText(QRectF(area.left(), area.bottom() + 1, area.width(), 14), Qt.AlignmentFlag.AlignCenter,
                         "training step")
        for x, text in self.markers:
            p = to_point(x, 0, "right")
            painter.setPen(QPen(QColor(128, 128, 128), 1, Qt.PenStyle.DashLine))
            painter.drawLine(QPointF(p.x(), area.top()), QPointF(p.x(), area.bottom()))
            painter.drawText(QPointF(p.x() + 2, area.top() + 10), text)
        legend_x = area.left()
        for name, (color, axis) in SERIES.items():
            pts = self.points[name]
            pen = QPen(QColor(color), 2)
            painter.setPen(pen)
            if len(pts) == 1:
                painter.drawEllipse(to_point(*pts[0], axis), 2.5, 2.5)
            elif pts:
                path = QPainterPath(to_point(*pts[0], axis))
                for x, y in pts[1:]:
                    path.lineTo(to_point(x, y, axis))
                painter.drawPath(path)
            label = LABELS[name] + (f" {pts[-1][1]:.3f}" if pts else "")
            painter.drawText(QPointF(legend_x, area.bottom() + 26), label)
            legend_x += painter.fontMetrics().horizontalAdvance(label) + 12
        painter.end()


def _axis_label(painter: QPainter, text: str, x: float, y: float, color: str) -> None:
    """``text`` written upwards, centred on ``y``, its line ending at ``x``."""
    painter.save()
    painter.setPen(QColor(color))
    painter.translate(x, y)
    painter.rotate(-90)
    painter.drawText(QRectF(-40, -12, 80, 14), Qt.AlignmentFlag.AlignCenter, text)
    painter.restore()
