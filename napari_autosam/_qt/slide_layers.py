"""Results of big images as lazy multiscale Labels layers read from the OME-Zarr labels on disk.

A plane larger than :data:`~napari_autosam.io.labels_zarr.ON_DISK_ABOVE`
pixels is segmented tile by tile into ``<data>/labels/<stem>-<hash>/<stem>_autosam.ome.zarr``
(and ``_h``, ``_instances``); the AutoSAM / h(g(I)) / instances layers then
show those folders' pyramids (napari reads only the tiles it draws), with the
scale and translation that overlay them on the image.  Segmenting the visible
region updates only that region on disk.  Smaller images keep in-memory layers
(:mod:`.layers`).  Such layers cannot be painted: "Edit region" (:mod:`.region`)
copies a region into an ordinary layer.
"""

from __future__ import annotations

from pathlib import Path

from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap

from .. import paths
from ..inference.ondisk import OnDiskResult
from ..inference.tiling import auto_tile
from ..io.images import image_stem
from ..io.labels_zarr import LabelImage, Placement, labels_on_disk, labels_path
from ..io.slides import slide_from_layer
from ..io.working import Resolution, describe, request_of
from ..jobs.segment import labels_task
from ..slide_regions import stored_labels
from .layers import (
    META_KEY,
    ROLES,
    ImageTarget,
    _autosam_colors,
    _free_name,
    find_output,
)


def on_disk(target: ImageTarget) -> bool:
    """Whether this image's results go to disk (single planes above the threshold; stacks stay in memory)."""
    return not target.is_stack and labels_on_disk(target.plane_shape)


def is_on_disk(layer) -> bool:
    """Whether an output layer shows on-disk labels (and so cannot be painted)."""
    info = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
    return isinstance(info, dict) and bool(info.get("path"))


def resolution_of(target: ImageTarget) -> Resolution:
    """The working resolution of a target: a slide's chosen one, else level 0 (µm/px from the layer's metadata)."""
    resolution = getattr(target, "resolution", None)  # segment_section.WorkingTarget
    if resolution is not None:
        return resolution
    mpp = target.layer.metadata.get("mpp") if isinstance(target.layer.metadata, dict) else None
    if isinstance(mpp, (int, float)):
        mpp = (mpp, mpp)
    mpp = tuple(float(v) for v in mpp) if isinstance(mpp, (list, tuple)) and len(mpp) == 2 else None
    return Resolution(0, 1.0, mpp)


def placement_of(target: ImageTarget) -> Placement:
    """Scale and translation (world units of the image layer) of one working-resolution label pixel."""
    transform = target.output_transform()  # the working-resolution mapping for slides
    y, x = target.spatial_axes()[-2:]
    units = [str(u) for u in getattr(target.layer, "units", ())]
    unit = "micrometer" if len(units) > x and units[y] == units[x] == "micrometer" else None
    return Placement(tuple(float(v) for v in transform["scale"][-2:]),
                     tuple(float(v) for v in transform["translate"][-2:]), unit)


def stem_of(target: ImageTarget) -> str:
    path = getattr(target.layer.source, "path", None)
    return image_stem(path) if path else target.name


def folder_of(session, target: ImageTarget) -> Path:
    """Where the labels of ``target`` live: its slide's folder in the open project, else the data folder's."""
    project = getattr(session, "project", None)
    slide = project.find(target.source) if project is not None else None
    if slide is not None:
        return project.labels_dir(slide.id)
    return paths.labels_dir(target.source, stem_of(target), session.root)


def two_speed_slide(session, target: ImageTarget, region, mode: str, preview: bool):
    """The :class:`~napari_autosam.io.slides.Slide` of ``target`` when segmenting it goes the two-speed way, else None.

    A whole slide (no region) segmented to masks with a model that has h goes that way, as ``segment`` sends
    a slide to OME-Zarr (:func:`~napari_autosam.jobs.slide_two_speed.two_speed_applies`, the one rule);
    regions, instances, previews, class models and images that are not slides keep the one-pass path.
    """
    from ..jobs.options import SegmentOptions
    from ..jobs.slide_two_speed import two_speed_applies

    if region is not None or target.is_stack:
        return None
    layer = target.layer
    slide = slide_from_layer(layer.data if layer.multiscale else [layer.data], layer.metadata)
    options = SegmentOptions(mode=mode, preview=preview, format="ome-zarr")
    if slide is None or not two_speed_applies(options, session.segmenter, target.layout, resolution_of(target)):
        return None
    return slide


def segment_task(session, target: ImageTarget, region, mode: str, token, *, overlap: int, preview: bool = False,
                 tissue=None):
    """The generator that segments ``target`` (or ``region`` of it) into its on-disk labels (the job layer's).

    The tiles follow the one tiling rule (:func:`~napari_autosam.inference.tiling.auto_tile`) on the plane or region.
    A whole slide goes in two speeds (:func:`two_speed_slide`): ``tissue`` (a TissueMask, e.g. the edited
    ``tissue`` layer's) or, when None, the tissue detected on the slide; glass tiles are skipped.
    """
    height, width = target.plane_shape if region is None else (region[1] - region[0], region[3] - region[2])
    resolution = resolution_of(target)
    project = getattr(session, "project", None)
    if project is not None and project.find(target.source) is not None:
        project.set_resolution(target.source, resolution.to_dict())
    slide = two_speed_slide(session, target, region, mode, preview)
    if slide is not None:
        from ..inference.slide_job import slide_labels_task
        from ..slide_regions import resolution_facts

        attributes = {"source": target.source, "resolution": resolution_facts(resolution), "model": session.model_label}
        return slide_labels_task(session.segmenter, target.data, folder_of(session, target), stem_of(target),
                                 slide=None if tissue is not None else slide, tissue=tissue,
                                 downsample=resolution.downsample, tile=auto_tile((height, width)) or 1024,
                                 overlap=overlap, placement=placement_of(target), attributes=attributes, cancel=token)
    return labels_task(session.segmenter, target.data, folder_of(session, target), stem_of(target),
                       source=target.source, resolution=resolution, placement=placement_of(target),
                       extra={"model": session.model_label}, region=region, channel_axis=target.layout.channel_axis,
                       mode=mode, cancel=token, overlap=overlap, tile=auto_tile((height, width)), preview=preview)


class FillingIn:
    """Shows a two-speed run's label images while they fill in (connect it to the runner's ``progress``).

    The images exist from the first tile on; at the first tile event they are added as layers, then
    refreshed at most every ``every`` seconds, so the user watches the slide fill tile by tile.
    """

    ROLES = ("h", "autosam")

    def __init__(self, section, target: ImageTarget, every: float = 2.0) -> None:
        self.section, self.target, self.every = section, target, every
        folder, stem = folder_of(section.session, target), stem_of(target)
        self.paths = {role: labels_path(folder, stem, role) for role in self.ROLES}
        self.layers: dict[str, Labels] = {}
        self.last = float("-inf")

    def __call__(self, event) -> None:
        import time

        if getattr(event, "phase", None) not in ("h", "sam") or self.target.name not in self.section.viewer.layers:
            return
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        for role, path in self.paths.items():
            if role in self.layers and self.layers[role] in self.section.viewer.layers:
                self.layers[role].refresh()
            elif path.exists():
                self.layers[role] = show_labels(self.section.viewer, self.target, role, path)


def watch_filling(section, target: ImageTarget) -> None:
    """Show the labels of ``section``'s two-speed run on ``target`` as they fill in, until the run ends."""
    watcher = FillingIn(section, target)
    runner = section.runner
    runner.progress.connect(watcher)

    def stop(*_args) -> None:
        for signal, slot in ((runner.progress, watcher), (runner.finished, stop)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):  # already gone
                pass

    runner.finished.connect(stop)


def show_labels(viewer, target: ImageTarget, role: str, path: Path) -> Labels:
    """The output layer of ``role`` showing the label image at ``path`` lazily (added, or refreshed in place)."""
    image = LabelImage.open(path)
    layer = find_output(viewer, target.name, role)
    if layer is not None and is_on_disk(layer) and layer.metadata[META_KEY]["path"] == str(path) \
            and tuple(layer.data[0].shape) == image.shape:
        layer.refresh()  # same folder, same shape: the zarr arrays read the new chunks
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    base, _dtype, colors = ROLES[role]
    colors = _autosam_colors() if colors == "autosam" else colors
    kwargs = {"colormap": DirectLabelColormap(color_dict=colors)} if colors is not None else {}
    y, x = target.spatial_axes()[-2:]
    units = getattr(target.layer, "units", None)
    if units is not None:
        kwargs["units"] = [units[y], units[x]]
    return viewer.add_labels(image.multiscale(), multiscale=True, name=_free_name(viewer, base, target.name),
                             metadata={META_KEY: {"image": target.name, "role": role, "path": str(path)}},
                             **image.layer_transform(), **kwargs)


def show_stored(section, target: ImageTarget) -> bool:
    """Show the on-disk labels an earlier session left for ``target`` (a big image just opened); False: none.

    They are shown as they were made (their own placement and resolution), so
    Edit region and Review work on them without segmenting again.
    """
    viewer = section.viewer
    if find_output(viewer, target.name, "autosam") is not None:
        return False
    stored = stored_labels(folder_of(section.session, target), stem_of(target))
    stored = {role: found for role, found in stored.items() if found[1].get("source") in (None, target.source)}
    if "autosam" not in stored:
        return False
    facts = stored["autosam"][1]
    slide = slide_from_layer(target.layer.data if target.layer.multiscale else [target.layer.data],
                             target.layer.metadata)
    request = request_of(facts.get("resolution"), slide) if slide is not None else None
    for role, (path, attributes) in stored.items():
        layer = show_labels(viewer, target, role, path)
        layer.metadata[META_KEY]["model"] = attributes.get("model", "an earlier model")
        layer.metadata[META_KEY]["resolution_request"] = request or None
    made = f" by {facts['model']}" if facts.get("model") else ""
    section.note.setText(f"Showing the labels stored in {stored['autosam'][0].parent}{made} at "
                         f"{describe(facts.get('resolution'))}, from an earlier session; Segment replaces them, "
                         "Edit region corrects them.")
    return True


def show_result(section, target: ImageTarget, result: OnDiskResult, model_label: str, request=None) -> None:
    """Show an on-disk result in the output layers and say what happened in the segment section's note.

    ``request`` is the working-resolution choice it was made at (kept for Edit region).
    """
    viewer = section.viewer
    if target.name not in viewer.layers:
        return
    section.normalizations[target.name] = result.normalization
    for role, path in result.paths.items():
        layer = show_labels(viewer, target, role, path)
        info = layer.metadata[META_KEY]
        info["model"] = model_label
        info["resolution_request"] = request
        if role == "autosam" and result.agreement:
            info["agreement"] = {**dict(info.get("agreement", {})), 0: result.agreement[0]}
    section._select_for_editing(target)
    notes = list(result.messages)
    where = "the region" if result.region is not None else "the image"
    notes.append(f"The labels are stored in {Path(next(iter(result.paths.values()))).parent} and shown from there; "
                 "to correct them, zoom in and press Edit region.")
    if getattr(target, "resolution", None) is not None:
        notes.append(f"Segmented at {describe(target.resolution)}.")
    if result.untrained:
        notes.append("The prompt generator is untrained, so this mask is only a starting point.")
    if result.cancelled:
        notes.append("Cancelled: the tiles not reached are empty.")
    section.note.setText(f"{model_label}: {result.foreground:.0%} of the pixels of {where} are foreground. "
                         + " ".join(notes))
