"""The worker side of one big slide spread over dask workers, tile group by tile group.

A slide whose labels go to OME-Zarr (:func:`napari_autosam.io.labels_zarr.labels_on_disk`,
or ``--format ome-zarr``) is segmented in three kinds of task, all reading
and writing the shared file system (only paths, coordinates and counts
travel over the network):

1. :func:`segment_group` — a run of consecutive tiles of the project's one
   tiling rule (:func:`~napari_autosam.inference.tiling.segmentation_tiles`):
   each worker reads its tiles' windows lazily from the slide and saves, per
   tile, the weighted probabilities ``weight × p`` (float32, exactly what the
   single process adds into its blend) and the instances found in the
   tile's core, into the slide's scratch folder (each file written atomically).
2. :func:`paste_instances_task` (``--mode instances`` only) — one task pastes
   every tile's instances in tile order, as the single process does, so the
   ids are the same.
3. :func:`write_region` — one task per output region of
   ``CHUNK·2^levels`` pixels a side (chunk-aligned, so no two tasks write
   the same chunk of any level): it sums the saved tiles that reach the
   region in tile order (the single process's float32 additions, in its
   order), thresholds, and writes the region's level-0 chunks and its
   lower levels down to ``levels`` into the label images.
4. :func:`finish_slide` builds the remaining (small) pyramid levels, sets
   ``max_label`` and renames the label images into place.

Every task can run again (a worker lost): it overwrites its files and
chunks with the same values; a zarr chunk or saved tile is whole or absent.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..inference.segmenter import Segmenter
from ..io.atomic import atomic_path, replace_directory
from ..jobs.options import SegmentOptions

__all__ = ["SlidePlan", "TileSegmenter", "finish_slide", "paste_instances_task", "plan_slide", "segment_group",
           "write_region"]


@dataclass(frozen=True)
class SlidePlan:
    """What every task of one spread slide needs to know (small: it travels with each task).

    Attributes
    ----------
    path, out, stem : the input, its output folder, the stem of its outputs
    shape : ``(H, W)`` of the labels (the working resolution)
    tile, overlap : the tiling (as :func:`~napari_autosam.inference.tiling.segmentation_tiles` takes it)
    n_tiles, batch_size : tiles of the plane; tiles per batch on the planning worker
    normalization : the whole slide's intensity scaling, computed once by the planning task
    roles : label images written ("autosam", "h", "instances")
    targets : role → the hidden temporary folder the label image is built in
    resolution, notes : the working resolution (None for plain images) and the command's note lines
    """

    path: str
    out: str
    stem: str
    shape: tuple[int, int]
    tile: int
    overlap: int
    n_tiles: int
    batch_size: int
    normalization: object
    roles: tuple[str, ...]
    targets: dict
    resolution: object = None
    notes: tuple[str, ...] = ()

    @property
    def scratch(self) -> Path:
        """The slide's scratch folder beside its outputs (removed by the client at the end)."""
        return Path(self.out) / f".{self.stem}.autosam-scratch"

    def tiles(self):
        from ..inference.tiling import segmentation_tiles

        return segmentation_tiles(self.shape, self.tile, self.overlap)


class TileSegmenter(Segmenter):
    """A :class:`Segmenter` that keeps each tile's instances instead of pasting them (they are pasted in order later)."""

    def add_instances(self, out, z, t, prob, embedding, options):
        from ..inference.instances import window_instances

        found, note = window_instances(self.sam, embedding, prob, options, keep=t.in_core)
        out.found[t.index] = found
        return note


class _Recorder:
    """Stands in for the segmenter's Accumulator: records each tile's weighted probabilities."""

    def __init__(self) -> None:
        self.added: list[tuple] = []
        self.found: dict[int, list] = {}
        self.windows: list = []
        self.next_label = 1

    def add(self, z, window, weight, autosam, h) -> None:
        self.added.append(tuple(None if v is None else weight * v for v in (autosam, h)))


def _instance_options(args: SegmentOptions):
    from ..inference import InstanceOptions

    options = InstanceOptions(source=args.instance_source, refine=args.refine)
    return replace(options, source="h", refine=False) if args.preview else options  # as Segmenter.segment


def _open(plan_path: str, args: SegmentOptions, segmenter=None):
    from ..jobs.segment import open_for_segmenting

    return open_for_segmenting(Path(plan_path), args, segmenter)


def plan_slide(segmenter, path: Path, out: Path, stem: str, args: SegmentOptions) -> SlidePlan | None:
    """A :class:`SlidePlan` when ``path`` goes to OME-Zarr in more than one tile, else None (one task does it).

    Opens the input as ``napari-autosam segment`` does, computes the whole
    slide's normalization once and creates the empty label images under
    hidden temporary names in ``out``.  Raises what the command would (one line).
    """
    from ..inference.ondisk import ROLES, create_role_labels
    from ..inference.segmenter import whole_image_normalization
    from ..inference.tiling import auto_tile, segmentation_tiles
    from ..io.labels_zarr import labels_path, placement_for
    from ..jobs.segment import output_format

    image, layout, resolution, note = _open(str(path), args, segmenter)
    if layout.is_stack or output_format(args, layout) != "ome-zarr":
        return None
    tile = args.tile if args.tile is not None else auto_tile(layout.plane_shape)
    n_tiles = len(segmentation_tiles(layout.plane_shape, tile or None, args.overlap))
    if n_tiles < 2:
        return None
    normalization = whole_image_normalization(image, layout, args.channels)
    if normalization.is_degenerate:
        return None
    wanted = {"autosam": not args.preview, "h": segmenter.model.surrogate is not None,
              "instances": args.mode == "instances"}
    roles = tuple(role for role in ROLES if wanted[role])
    attributes = {"source": str(path)}
    if resolution is not None:
        from ..slide_regions import resolution_facts

        attributes["resolution"] = resolution_facts(resolution)
    targets = {}
    for role in roles:
        final = labels_path(out, stem, role)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.dask-", suffix=".incomplete", dir=out))
        create_role_labels(tmp, role, layout.output_shape, placement_for(resolution), attributes)
        targets[role] = str(tmp)
    return SlidePlan(str(path), str(out), stem, tuple(layout.output_shape), int(tile), int(args.overlap), n_tiles,
                     int(segmenter.batch_size), normalization, roles, targets, resolution,
                     (f"note: {note}",) if note else ())


# --- 1. tiles ------------------------------------------------------------------------------------


def _tile_file(plan: SlidePlan, index: int, what: str) -> Path:
    return plan.scratch / "tiles" / f"{index:06d}_{what}"


def _save_tile(plan: SlidePlan, index: int, probs: tuple, found) -> None:
    (plan.scratch / "tiles").mkdir(parents=True, exist_ok=True)
    for what, values in zip(("autosam", "h"), probs):
        if values is not None:
            with atomic_path(_tile_file(plan, index, f"{what}.npy")) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(values, np.float32))
    if found is not None:
        masks = [np.asarray(i.mask, bool) for i in found]
        with atomic_path(_tile_file(plan, index, "instances.npz")) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, windows=np.array([i.window for i in found], np.int64).reshape(-1, 4),
                     scores=np.array([i.score for i in found], np.float64),
                     shapes=np.array([m.shape for m in masks], np.int64).reshape(-1, 2),
                     masks=np.concatenate([m.ravel() for m in masks]) if masks else np.zeros(0, bool))


def _load_found(plan: SlidePlan, index: int) -> list:
    from ..inference.instances import Instance

    with np.load(_tile_file(plan, index, "instances.npz")) as data:
        windows, scores, shapes, flat = data["windows"], data["scores"], data["shapes"], data["masks"]
    found, at = [], 0
    for window, score, (h, w) in zip(windows, scores, shapes):
        found.append(Instance(tuple(int(v) for v in window), flat[at : at + h * w].reshape(h, w), float(score)))
        at += h * w
    return found


def segment_group(segmenter, plan: SlidePlan, indices: list[int], args: SegmentOptions) -> tuple[dict, list[str]]:
    """Segment tiles ``indices`` of the slide and save each tile's outputs in the scratch folder.

    Batches are those of the single process when the group starts at a
    multiple of the batch size.  Returns ``{tile index: WindowInfo}`` and the
    tiles' notes (e.g. capped prompts), in tile order.
    """
    from ..inference.pipeline import ReadAhead
    from ..progress import run

    image, layout, _, _ = _open(plan.path, args, segmenter)
    tiles = plan.tiles()
    items = [(0, tiles[i]) for i in indices]
    options = _instance_options(args)
    use_cache = "disk" if segmenter.cache.directory is not None else False  # as Segmenter.segment for tiles
    size = segmenter.batch_size
    batches = [items[k : k + size] for k in range(0, len(items), size)]
    recorder, notes = _Recorder(), []
    with ReadAhead(batches, lambda b: segmenter.read_batch(image, layout, b, plan.normalization, args.channels)) as reader:
        for batch, rgbs in reader:
            notes += run(segmenter.segment_batch(rgbs, layout, batch, recorder, args.mode, options, use_cache,
                                                 args.preview))
            for (_, t), probs in zip(batch, recorder.added):
                _save_tile(plan, t.index, probs, recorder.found.pop(t.index, []) if args.mode == "instances" else None)
            recorder.added.clear()
    return {t.index: w for (_, t), w in zip(items, recorder.windows)}, notes


# --- 2. instances ---------------------------------------------------------------------------------


def paste_instances_task(plan: SlidePlan, args: SegmentOptions) -> None:
    """Paste every tile's instances in tile order into ``scratch/instances.zarr``, as one process does.

    Built under a temporary name and renamed when complete; a run that finds
    it complete does nothing (output regions may be reading it).
    """
    from ..inference.instances import paste_instances
    from ..inference.tiling import create_array

    final = plan.scratch / "instances.zarr"
    if final.is_dir():
        return
    tmp = Path(tempfile.mkdtemp(prefix=".paste-", dir=plan.scratch))
    labels = create_array(plan.shape, np.int32, store=tmp, name="instances")
    options, next_label = _instance_options(args), 1
    for t in plan.tiles():
        found = _load_found(plan, t.index)
        if found:
            window = np.array(labels[t.slices])
            next_label = paste_instances(window, found, next_label, options)
            labels[t.slices] = window
    replace_directory(tmp / "instances.zarr", final)
    shutil.rmtree(tmp, ignore_errors=True)


# --- 3. output regions ----------------------------------------------------------------------------


def region_boxes(shape: tuple[int, int], levels: int) -> list[tuple[int, int, int, int]]:
    """Chunk-aligned regions ``(y0, y1, x0, x1)`` of ``CHUNK·2^levels`` pixels a side, in raster order."""
    from ..io.labels_zarr import CHUNK

    side = CHUNK * 2 ** int(levels)
    height, width = shape
    return [(y, min(y + side, height), x, min(x + side, width))
            for y in range(0, height, side) for x in range(0, width, side)]


def reaches(window: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> bool:
    """Whether two ``(y0, y1, x0, x1)`` boxes overlap."""
    return window[0] < box[1] and box[0] < window[1] and window[2] < box[3] and box[2] < window[3]


def _blend(plan: SlidePlan, what: str, box, tiles) -> np.ndarray:
    """Sum of the saved ``weight × p`` of ``tiles`` over ``box``, in tile order (the single process's float32 sums)."""
    y0, y1, x0, x1 = box
    total = np.zeros((y1 - y0, x1 - x0), np.float32)
    for t in tiles:
        ty0, ty1, tx0, tx1 = t.window
        a0, a1, b0, b1 = max(y0, ty0), min(y1, ty1), max(x0, tx0), min(x1, tx1)
        part = np.load(_tile_file(plan, t.index, f"{what}.npy"), mmap_mode="r")[a0 - ty0 : a1 - ty0, b0 - tx0 : b1 - tx0]
        total[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = total[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] + part
    return total


def write_region(plan: SlidePlan, box: tuple[int, int, int, int], levels: int) -> dict[str, int]:
    """Write output region ``box`` of every label image (level 0 and its levels 1..``levels``).

    Returns counts for the report: ``foreground`` (AutoSAM, or h in a
    preview), ``inter``/``total`` (Dice counts of AutoSAM vs h) and ``max_label``.
    """
    import zarr

    from ..io.labels_zarr import LabelImage
    from ..losses import dice_counts

    tiles = [t for t in plan.tiles() if reaches(t.window, box)]
    values = {role: (_blend(plan, role, box, tiles) > 0.5).astype(np.uint8) for role in ("autosam", "h")
              if role in plan.roles}
    y0, y1, x0, x1 = box
    if "instances" in plan.roles:
        values["instances"] = np.asarray(zarr.open_array(str(plan.scratch / "instances.zarr"), mode="r")[y0:y1, x0:x1])
    for role, array in values.items():
        image = LabelImage.open(plan.targets[role], mode="r+")
        image.levels[0][y0:y1, x0:x1] = array.astype(image.dtype, copy=False)
        image.build_pyramid(box, stop=levels)
    shown = values.get("autosam", values.get("h"))
    counts = {"foreground": int(np.count_nonzero(shown)), "inter": 0, "total": 0,
              "max_label": int(values["instances"].max(initial=0)) if "instances" in values else 0}
    if "autosam" in values and "h" in values:
        counts["inter"], counts["total"] = dice_counts(values["autosam"], values["h"])
    return counts


# --- 4. the end -----------------------------------------------------------------------------------


def finish_slide(plan: SlidePlan, levels: int, max_label: int, args: SegmentOptions) -> list[str]:
    """Build the pyramid levels below ``levels``, set ``max_label``, rename the label images into place.

    Returns the names of the files written (with ``<stem>_….geojson`` when ``args.geojson``).
    """
    from ..io.labels_zarr import LabelImage, labels_path

    finals = {role: labels_path(plan.out, plan.stem, role) for role in plan.roles}
    for role in plan.roles:
        tmp = Path(plan.targets[role])
        if not tmp.is_dir():  # renamed by an earlier run of this task
            continue
        image = LabelImage.open(tmp, mode="r+")
        image.build_pyramid(start=min(int(levels), len(image.levels) - 1))
        if role == "instances":
            image.set_attributes(max_label=int(max_label))
    for role in plan.roles:
        if Path(plan.targets[role]).is_dir():
            replace_directory(Path(plan.targets[role]), finals[role])
    names = [p.name for p in finals.values()]
    if args.geojson:
        from ..jobs.geojson_outputs import write_labels_geojson

        names.append(write_labels_geojson(finals, Path(plan.out), plan.stem, plan.resolution).name)
    shutil.rmtree(plan.scratch, ignore_errors=True)
    return sorted(names)
