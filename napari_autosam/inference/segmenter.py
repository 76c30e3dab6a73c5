"""The segmentation engine: automatic AutoSAM masks, h(g(I)), self-prompted instances.

One 2D window (a plane, or a tile of a large plane) is segmented as::

    rgb = to_rgb_uint8(window, normalization=...)       # one scaling for the whole image
    embedding = cache / SAM encoder(rgb)                 # reused when the image was seen
    g_input = prepare_image(rgb, g.input_size)
    sam_logits, h_logits = AutoSAM(g_input, embedding)   # SAM's decoder prompted with g(I); h(g(I))
    prob = to_probabilities(logits, gain)                # back to the window's pixels (models.logits)

Stacks go slice by slice, large planes tile by tile, both in batches; the
probabilities of overlapping tiles are blended (:mod:`.tiling`).
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from ..device import autocast, pick_device
from ..io.normalize import Normalization
from ..models.autosam import AutoSAM
from ..models.checkpoint import ModelCheckpoint
from ..progress import CancelToken, Stopwatch, Task, nested
from ..sam.cache import EmbeddingCache, sam_fingerprint
from ..sam.embedding import Geometry, embed_images, frame_to_original, prepare_image
from .inputs import ImageLayout, image_layout
from .instances import InstanceOptions, capped_messages, paste_instances, window_instances
from .outputs import Accumulator, SegmentationResult, WindowInfo
from .pipeline import ReadAhead, default_batch_size
from .prompts import boxes_to_sam, check_box, check_points, decode, mask_prompt, points_to_sam
from .segment_kinds import segment_kind
from .tiling import DEFAULT_OVERLAP, Tile, segmentation_tiles
from .window_steps import as_image, output_store, read_windows, whole_image_normalization

MODES = ("semantic", "instances")
#: The untrained default g: small enough for a CPU, seeded so it is the same everywhere.
DEFAULT_PROMPT_GENERATOR = "hardnet_small"
DEFAULT_INPUT_SIZE = 256
DEFAULT_SEED = 0


def default_model() -> ModelCheckpoint:
    """The untrained g (``hardnet_small`` at 256²) and h, with fixed random weights."""
    from ..models.prompt_generator import build_prompt_generator
    from ..models.surrogate import SurrogateDecoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEFAULT_SEED)
        g = build_prompt_generator(DEFAULT_PROMPT_GENERATOR, input_size=DEFAULT_INPUT_SIZE)
        h = SurrogateDecoder()
    return ModelCheckpoint(g.eval(), h.eval(), {"untrained": True, "seed": DEFAULT_SEED})


def _depth_adapters(model: ModelCheckpoint, sam, device):
    """The model's depth adapters checked against ``sam`` and moved to ``device`` (None for a 2D model)."""
    adapters = getattr(model, "adapters", None)
    if adapters is None:
        return None
    from ..sam.adapters import check_adapters

    check_adapters(adapters, sam)
    return adapters.to(device).eval()


class Segmenter:
    """Automatic segmentation with a frozen SAM, a prompt generator g and a surrogate h.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam
        Frozen SAM (e.g. from :func:`napari_autosam.sam.registry.load_sam`).
    model : ModelCheckpoint or None
        g and h; None builds the untrained default (``untrained`` is then True).
    cache : EmbeddingCache or None
        SAM embeddings of images already seen; None makes an in-memory one.
    device : str, torch.device or None
        Moves SAM (and the cache's encoder with it) there; None keeps SAM's device.
    batch_size : int or None
        Slices or tiles per batch; None: 1 on the CPU, from the free memory on CUDA, 4 on MPS.
    instance_options : InstanceOptions or None
        Defaults of the instance mode.
    """

    def __init__(self, sam, model: ModelCheckpoint | None = None, *, cache: EmbeddingCache | None = None,
                 device=None, batch_size: int | None = None, instance_options: InstanceOptions | None = None) -> None:
        if device is not None:
            sam.to(pick_device(device))
        self.sam = sam
        self.device = next(sam.parameters()).device
        if cache is not None and cache.fingerprint != sam_fingerprint(sam):
            raise ValueError("the embedding cache belongs to a different SAM")
        self.cache = cache if cache is not None else EmbeddingCache(sam)
        self.batch_size = batch_size or default_batch_size(sam, self.device)  # 1 on a CPU, from free memory on CUDA
        self.instance_options = instance_options or InstanceOptions()
        self.set_model(model)

    def set_model(self, model: ModelCheckpoint | None) -> None:
        """Use new g and h (e.g. after fine-tuning); cached embeddings stay valid and are kept."""
        model = default_model() if model is None else model
        adapters = _depth_adapters(model, self.sam, self.device)  # first: a mismatch leaves the old model in place
        self.untrained = model.info.untrained
        self.probability_gain = model.info.probability_gain  # AutoSAM's logit gain; masks do not depend on it
        self.kind = segment_kind(model.kind)
        g = model.prompt_generator.to(self.device).eval()
        h = model.surrogate.to(self.device).eval() if model.surrogate is not None else None
        self.checkpoint = model
        self.model = AutoSAM(self.sam, g, h)
        self.adapters = adapters

    # --- automatic segmentation ---------------------------------------------------------

    def segment(self, image, *, channel_axis: int | None = None, channels=None, mode: str = "semantic",
                tile: int | None = None, overlap: int = DEFAULT_OVERLAP, normalization: Normalization | None = None,
                cancel: CancelToken | None = None, store: str | os.PathLike | None = None,
                instance_options: InstanceOptions | None = None, stack: bool | None = None,
                layout: ImageLayout | None = None, preview: bool = False) -> Task[SegmentationResult]:
        """Segment a 2D, RGB(A), multichannel or 3D image; a generator of ``segment`` progress.

        Parameters
        ----------
        image : array-like
            ``Y×X`` (any dtype), ``Y×X×3|4``, ``Y×X×C`` / ``C×Y×X``, ``Z×Y×X`` or
            ``Z×Y×X×C``; numpy or lazy (memmap, zarr, dask): only windows are read.
        channel_axis, channels : which axis holds channels and which 1-3 of them
            to show as gray or R,G,B (see :func:`~napari_autosam.io.normalize.to_rgb_uint8`).
        mode : "semantic" or "instances" (adds self-prompted instance labels).
        tile, overlap : planes larger than ``tile`` pixels on a side are cut into
            windows of ``tile`` (up to 1/16 more, when that saves a tile) pixels overlapping
            by at least ``overlap`` and blended (:func:`~.tiling.segmentation_tiles`); their
            outputs are zarr arrays in ``store`` (default: a new temporary directory).
        normalization : reuse a scaling (e.g. ``result.normalization``) instead of
            computing percentiles of this image.
        cancel : a CancelToken; when set, the result so far is returned (``cancelled``).
        store : directory for the zarr outputs of a tiled image.
        instance_options : overrides ``self.instance_options`` for this call.
        stack : True: a 3D array is ``Z×Y×X`` even with 4 or fewer slices (which
            would otherwise be taken for channels); False: it must be one plane.
        layout : the image's axes, when the caller has found them already
            (:func:`~napari_autosam.inference.inputs.image_layout`); then
            ``channel_axis`` and ``stack`` are not used.
        preview : h(g(I)) only: SAM's image encoder and mask decoder never run, so it is
            tens of times faster on a CPU; tiles, stacks and cancel work the same.  The
            result has ``autosam_prob``/``autosam_mask`` None, no agreement, and instances
            are split from the h mask without SAM (``refine=False``).

        Returns (as the generator's value) a :class:`SegmentationResult`.
        """
        image, layout, normalization, options = self._checked(image, mode, tile, overlap, normalization, channels,
                                                               instance_options, stack, layout, channel_axis, preview)
        if self.kind.segment_stack is not None and layout.is_stack and not preview and not normalization.is_degenerate:
            return (yield from self.kind.segment_stack(self, image, layout, normalization=normalization,
                                                       channels=channels, mode=mode, options=options, tile=tile,
                                                       overlap=overlap, store=store, cancel=cancel))
        tiles = segmentation_tiles(layout.plane_shape, tile, overlap)
        store = output_store(store) if len(tiles) > 1 else None
        out = Accumulator(layout.output_shape, with_h=self.model.surrogate is not None,
                          with_instances=mode == "instances", store=store, with_autosam=not preview)
        messages = self._plane_notes(layout, normalization)
        items = [] if normalization.is_degenerate else [(z, t) for z in range(layout.n_planes) for t in tiles]
        unit = "tiles" if len(tiles) > 1 else "slices" if layout.is_stack else "images"
        cancelled, capped = yield from self._segment_items(image, layout, items, out, normalization, channels, mode,
                                                           options, len(tiles), unit, preview, cancel)
        messages += capped_messages(capped)
        arrays, agreement = out.finish()
        return SegmentationResult(**arrays, agreement=agreement, normalization=normalization, store=store,
                                  cancelled=cancelled, untrained=self.untrained, messages=messages, windows=out.windows,
                                  preview=preview)

    def _plane_notes(self, layout: ImageLayout, normalization: Normalization) -> list[str]:
        """What a plane-by-plane segmentation tells the user before it starts."""
        messages = []
        if self.adapters is not None and not layout.is_stack:
            messages.append("this model's depth adapters need a stack; one plane goes through SAM's plain encoder")
        if normalization.is_degenerate:
            messages.append("the image is constant or has no finite values: nothing to segment")
        return messages

    def _checked(self, image, mode, tile, overlap, normalization, channels, instance_options, stack, layout,
                 channel_axis, preview):
        """``(image, layout, normalization, instance options)`` of a :meth:`segment` call, its arguments checked."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        image = as_image(image)
        if tile is not None and not (tile >= 64 and 0 <= overlap < tile):
            raise ValueError(f"need tile >= 64 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
        if layout is None or tuple(layout.shape) != tuple(int(s) for s in np.shape(image)):
            layout = image_layout(image, channel_axis, stack=stack)
        if normalization is None:
            normalization = whole_image_normalization(image, layout, channels)
        options = instance_options or self.instance_options
        if preview:
            if self.model.surrogate is None:
                raise ValueError("a preview needs the surrogate h, and this model has none")
            options = replace(options, source="h", refine=False)
        return image, layout, normalization, options

    def _segment_items(self, image, layout, items, out, normalization, channels, mode, options, n_tiles: int,
                       unit: str, preview: bool, cancel) -> Task[tuple[bool, list[str]]]:
        """Segment the windows ``items`` in batches into ``out``; returns ``(cancelled, capped-prompt notes)``."""
        # Tiles of a large image go to the cache only when it keeps them on disk ("disk": not in its
        # memory part either): in memory they would make the memory held grow with the image.
        use_cache = True if n_tiles == 1 else "disk" if self.cache.directory is not None else False
        clock = Stopwatch(len(items))
        capped: list[str] = []
        batches = [items[start : start + self.batch_size] for start in range(0, len(items), self.batch_size)]
        done = 0
        # The next batch's windows are read on a background thread while this one is computed.
        with ReadAhead(batches, lambda b: self.read_batch(image, layout, b, normalization, channels)) as reader:
            for batch, rgbs in reader:
                if cancel is not None and cancel.cancelled:
                    return True, capped
                capped += yield from self.segment_batch(rgbs, layout, batch, out, mode, options, use_cache, preview)
                done += len(batch)
                yield clock.event("segment", done, f"segmented {done}/{len(items)} {unit}")
        return False, capped

    def segment_region(self, image, region: tuple[int, int, int, int], *, z: int = 0, channel_axis: int | None = None,
                       channels=None, normalization: Normalization | None = None, stack: bool | None = None,
                       layout: ImageLayout | None = None, **kwargs) -> Task[SegmentationResult]:
        """Segment only ``region = (y0, y1, x0, x1)`` of plane ``z`` (e.g. what the viewer shows).

        The intensity scaling is that of the whole image (unless given), so
        the region looks as it would in a whole-image segmentation.  Outputs
        have the region's shape.  Other keywords as for :meth:`segment`.
        """
        if layout is None or tuple(layout.shape) != tuple(int(s) for s in np.shape(image)):
            layout = image_layout(image, channel_axis, stack=stack)
        height, width = layout.plane_shape
        y0, y1, x0, x1 = (int(v) for v in region)
        y0, y1, x0, x1 = max(0, y0), min(height, y1), max(0, x0), min(width, x1)
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"region {tuple(region)} does not overlap the {height}×{width} image")
        if not 0 <= z < layout.n_planes:
            raise ValueError(f"slice {z} is out of range for {layout.n_planes} slices")
        if normalization is None:
            normalization = whole_image_normalization(image, layout, channels)
        plane = layout.read(image, z, (y0, y1, x0, x1))
        return (yield from self.segment(plane, channel_axis=layout.plane_channel_axis, channels=channels,
                                        normalization=normalization, stack=False, **kwargs))

    # --- one batch of windows: the public per-window steps (the Dask path calls these too) ------------

    @staticmethod
    def read_batch(image, layout: ImageLayout, batch: list[tuple[int, Tile]], normalization, channels) -> list[np.ndarray]:
        """The ``H×W×3`` uint8 RGB windows ``(z, tile)`` of a batch (runs on the read-ahead thread)."""
        return read_windows(image, layout, batch, normalization, channels)

    def segment_batch(self, rgbs: list[np.ndarray], layout: ImageLayout, batch: list[tuple[int, Tile]],
                      out: Accumulator, mode: str, options: InstanceOptions, use_cache,
                      preview: bool = False) -> Task[list[str]]:
        """Segment a batch of RGB windows into ``out`` (its ``add``, ``windows`` and, for instances, the
        labels that :meth:`add_instances` writes); returns the notes of windows whose prompts were capped."""
        embeddings = None if preview else (yield from self.embed_windows(rgbs, use_cache))
        probs, ious = self.window_probabilities(rgbs, embeddings)
        notes = []
        for k, ((z, t), (autosam, h)) in enumerate(zip(batch, probs)):
            out.add(z, t.slices, t.weight(), autosam, h)
            if mode == "instances":
                source = h if (options.source == "h" and h is not None) else autosam
                note = self.add_instances(out, z, t, source, None if preview else embeddings[k : k + 1], options)
                if note:
                    notes.append(f"window {t.index}" + (f", slice {z}" if layout.is_stack else "") + f": {note}")
        out.windows += [WindowInfo(z, t.window, t.core, iou) for (z, t), iou in zip(batch, ious)]
        return notes

    def embed_windows(self, rgbs: list[np.ndarray], use_cache=True) -> Task[torch.Tensor]:
        """``N×256×64×64`` SAM embeddings, through the cache when ``use_cache`` (on disk only when "disk";
        encoding progress nested)."""
        if use_cache:
            return (yield from nested(self.cache.embed_many(rgbs, batch_size=len(rgbs), remember=use_cache != "disk")))
        return (yield from nested(embed_images(self.sam, rgbs, batch_size=len(rgbs))))

    def window_probabilities(self, rgbs: list[np.ndarray], embeddings: torch.Tensor | None = None):
        """``([(autosam, h)], ious)``: the probabilities of RGB windows at their own resolution and SAM's
        predicted IoUs, as this model's kind makes them (AutoSAM's with the model's logit gain; a class
        model's are ``1 - P(background)``).  ``embeddings`` None: a preview, h(g(I)) only (autosam None)."""
        return self.kind.window_probabilities(self, rgbs, embeddings)

    def add_instances(self, out: Accumulator, z: int, t: Tile, prob: np.ndarray, embedding: torch.Tensor,
                      options: InstanceOptions) -> str | None:
        """Self-prompted instances of one window, kept where their inner point is in the tile's core."""
        found, note = window_instances(self.sam, embedding, prob, options, keep=t.in_core)
        if found:
            labels = out.labels_window(z, t.slices)
            out.next_label = paste_instances(labels, found, out.next_label, options)
            out.put_labels(z, t.slices, labels)
        return note

    # --- interactive prompts ------------------------------------------------------------

    def prompt(self, rgb: np.ndarray, *, points=None, labels=None, box=None, mask_input=None,
               dense: str = "sam", multimask: bool | None = None) -> tuple[np.ndarray, float]:
        """SAM's mask for user prompts on an ``H×W×3`` uint8 image, from its cached embedding.

        Parameters
        ----------
        points : N×2 ``(x, y)`` in image pixels; labels : N ints (1 foreground, 0 background; default 1)
        box : ``(x0, y0, x1, y1)`` in image pixels
        mask_input : ``H×W`` mask (anything > 0.5 is foreground) sent as SAM's mask prompt
        dense : "sam": SAM's own dense prompt (its no-mask embedding, or ``mask_input``),
            i.e. plain interactive SAM; "autosam": g(I), so the clicks and box edit the
            automatic mask instead of starting afresh
        multimask : ask SAM for three masks and keep the best scored; default: only
            for a single point without box or mask (an ambiguous prompt)

        Returns
        -------
        mask : ``H×W`` bool; score : SAM's predicted IoU of that mask.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
            raise ValueError(f"prompt() needs an H×W×3 uint8 image (see to_rgb_uint8), got {rgb.dtype} {rgb.shape}")
        if points is None and box is None and mask_input is None:
            raise ValueError("give at least one of points, box or mask_input")
        if dense not in ("sam", "autosam"):
            raise ValueError(f"dense must be 'sam' or 'autosam', got {dense!r}")
        if dense == "autosam" and mask_input is not None:
            raise ValueError("mask_input and dense='autosam' both set SAM's dense prompt; give one of them")
        geometry = Geometry(*rgb.shape[:2])
        point_arg = None
        if points is not None:
            xy, lab = check_points(points, labels, rgb.shape[:2])
            point_arg = (points_to_sam(xy, geometry)[None], lab[None])
        boxes = None if box is None else boxes_to_sam(check_box(box, rgb.shape[:2]).reshape(1, 4), geometry)
        masks = None
        if mask_input is not None:
            mask_input = np.asarray(mask_input)
            if mask_input.shape != rgb.shape[:2]:
                raise ValueError(f"mask_input has shape {mask_input.shape}, the image {rgb.shape[:2]}")
            masks = mask_prompt((mask_input > 0.5)[None])
        if multimask is None:
            multimask = box is None and mask_input is None and point_arg is not None and point_arg[0].shape[1] == 1
        embedding = self.cache.get(rgb)
        prompt = self._dense_prompt(rgb) if dense == "autosam" else None
        logits, scores = decode(self.sam, embedding, points=point_arg, boxes=boxes, masks=masks, dense=prompt,
                                multimask=multimask)
        best = int(torch.argmax(scores[0]))
        mask = frame_to_original(logits[:, best : best + 1], geometry)[0, 0] > 0
        return mask.numpy(), float(scores[0, best])

    @torch.inference_mode()
    def _dense_prompt(self, rgb: np.ndarray) -> torch.Tensor:
        """g(I), ``1×256×64×64``."""
        with autocast(self.device):
            return self.model.prompt_generator(prepare_image(rgb, self.model.input_size)[0].to(self.device)).float()
