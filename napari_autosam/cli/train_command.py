"""``napari-autosam train``: fine-tune the prompt generator g (and h) on a folder of images and masks."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

from ..jobs.defaults import DEFAULT_TIME_LIMIT  # shared with the widget's fine-tuning
from . import CommandError, channel_list, non_negative_int, open_sam, positive_int
from .precision import add_precision_argument, apply_precision


def _augment(args):
    """``--no-augment`` / ``--affine`` on top of the preset's augmentation (None: the preset's own)."""
    import dataclasses

    from ..training import Augmentation
    from ..training.presets import get_preset

    if args.no_augment:
        return Augmentation.none()
    if not args.affine:
        return None
    base = get_preset(args.preset).augment
    ranges = base if base.rotation or base.scale != (1.0, 1.0) or base.translate else Augmentation(affine_p=0.5)
    return dataclasses.replace(base, affine_p=0.5, rotation=ranges.rotation, scale=ranges.scale,
                               translate=ranges.translate)


def _config(args, resolution: dict | None = None):
    from ..training import TrainConfig

    return TrainConfig(
        generator=args.generator,
        input_size=args.input_size,
        steps=args.steps,
        h_steps=args.h_steps,
        epochs=args.epochs,
        h_epochs=args.h_epochs,
        min_steps=args.min_steps,
        time_limit=args.time_limit or None,
        preset=args.preset,
        joint=args.joint,
        logit_gain=args.logit_gain,
        window=args.window,
        batch_size=args.batch_size,
        lr=args.lr,
        h_lr=args.lr,
        patience=args.patience if args.patience > 0 else None,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
        variants=tuple(args.variants.split(",")) if args.variants else None,
        augment=_augment(args),
        pretrained_backbone=args.pretrained_backbone,
        g_input=args.g_input,
        resolution=resolution,
        depth_adapters=args.depth_adapters,
        depth_window=args.depth_window,
        depth_kind=args.depth_kind,
    )


def _number(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    import argparse

    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _fraction(text: str) -> float:
    import argparse

    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _input_size(text: str) -> int:
    import argparse

    from ..models.checkpoint import MAX_INPUT_SIZE

    value = positive_int(text)
    if value % 16 or not 16 <= value <= MAX_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"must be a multiple of 16 from 16 to {MAX_INPUT_SIZE}, got {value}")
    return value


def _summary(result) -> dict:
    meta = result.model.metadata
    return {
        "path": str(result.path),
        "version": result.version,
        "cancelled": result.cancelled,
        "ended": meta.get("ended"),
        "metrics": meta.get("metrics"),
        "trained_on_count": meta.get("trained_on_count"),
        "validation": meta.get("validation"),
    }


@contextlib.contextmanager
def _first_interrupt_cancels(cancel):
    """The first Ctrl-C asks training to stop after the current step (the best model is saved); the second aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\ncancelling: saving the best model so far (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(args) -> int:
    from ..distributed.ddp import training_session

    with training_session(args.device) as shared:  # under torchrun: this process's share of the run, else None
        return _train(args, shared)


def _train(args, shared=None) -> int:
    from ..models.store import sam_for_model
    from ..progress import CancelToken
    from ..sam.cache import EmbeddingCache
    from ..training import train
    from .progressbar import ProgressBar
    from .resolution import load_samples_at

    if shared is not None:
        from ..distributed.ddp import quiet_bar

        args.device = str(shared.device)
    _check_arguments(args)
    channels = args.channels
    from .class_options import train_classes

    classes = train_classes(args)  # --classes / --num-classes, or the --init model's; None: binary
    project = None
    if args.project:  # every accepted correction of the project's slides, into the project's model store
        from .project_command import training_data

        samples, resolution, val, project = training_data(args, channels, classes)
    elif args.depth_adapters:  # whole stacks, not slices: the depth-adapter mode (docs/depth.md)
        from ..training.depth_stage import load_volumes

        if classes is not None:
            raise CommandError("--depth-adapters trains a binary model; leave out --classes/--num-classes")
        samples, resolution = load_volumes(args.images, args.masks or args.images), None
        val = load_volumes(args.val_images, args.val_masks) if args.val_images else None
    else:
        samples, resolution = load_samples_at(args.images, args.masks or args.images, args, channels=channels,
                                              classes=classes)
        val = load_samples_at(args.val_images, args.val_masks, args, channels=channels,
                              classes=classes)[0] if args.val_images else None
    from .class_options import note_masks_without_classes

    note_masks_without_classes(classes, samples)
    config = _config(args, resolution)
    if classes is not None:
        import dataclasses

        config = dataclasses.replace(config, classes=tuple(classes.to_metadata()))
    bar = ProgressBar(unit="step") if shared is None or shared.is_main else quiet_bar()
    sam = open_sam(sam_for_model(args.sam, args.init), args.device, bar)
    apply_precision(sam, args)
    cache = EmbeddingCache(sam, Path(args.cache_dir).expanduser()) if args.cache_dir else None
    cancel = CancelToken()
    out = args.out or str(project.model_store(sam).root)  # --project: the project's store of this SAM
    task = train(sam, samples, config=config, init=args.init, out=out, val_samples=val, cache=cache, cancel=cancel,
                 distributed=shared)
    with _first_interrupt_cancels(cancel):
        result = bar.run(task)
    if shared is not None and not shared.is_main:
        return 0  # the main process reports
    _report(result, args.json)
    return 0


def _check_arguments(args) -> None:
    """The choices and the combinations of ``train``'s options, each wrong one a one-line error."""
    _check_choices(args)
    if bool(args.images) == bool(args.project):
        raise CommandError("give --images (a folder of images or slides) or --project (a slide project), one of them")
    if args.out is None and not args.project:
        raise CommandError("--out is needed: a model-store folder or a new .safetensors file")
    if bool(args.val_images) != bool(args.val_masks):
        raise CommandError("--val-images and --val-masks go together")


def _report(result, as_json: bool) -> None:
    """The run's summary on stdout: JSON, or the model's path and its validation Dice before -> after."""
    summary = _summary(result)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    metrics = summary["metrics"] or {}
    print(f"model: {summary['path']}" + (f" (version {result.version})" if result.version else ""))
    for key in ("val_dice_autosam", "val_dice_h"):
        if key in metrics:
            print(f"{key}: {metrics.get('initial_' + key, float('nan')):.4f} -> {metrics[key]:.4f}")
    if result.cancelled:
        print("training was cancelled; the best model so far was saved")


def _check_choices(args) -> None:
    """``--generator`` and ``--preset`` checked against their registries (not at parser build: that imports torch)."""
    from ..models.prompt_generator import PROMPT_GENERATORS
    from ..training.presets import preset_names

    if args.generator is not None and args.generator not in PROMPT_GENERATORS:
        raise CommandError(f"--generator: unknown prompt generator {args.generator!r}; "
                           f"choose one of {', '.join(sorted(PROMPT_GENERATORS))}")
    if args.preset is not None and args.preset not in preset_names():
        raise CommandError(f"--preset: unknown preset {args.preset!r}; choose one of {', '.join(preset_names())}")


def register(subparsers) -> None:
    # No torch here: `napari-autosam --help` stays fast (the registries are checked in _check_choices).
    parser = subparsers.add_parser(
        "train",
        help="fine-tune the prompt generator on images and masks",
        description="Train g through the frozen SAM, then the surrogate h, and save a new model version. "
        "Masks are matched to images by file stem (img_001.tif ↔ img_001.tif / img_001_mask.png).",
    )
    parser.add_argument("--images",
                        help="folder of images (TIFF, PNG, JPEG) or whole slides (SVS, NDPI, MRXS, SCN, BIF, …)")
    parser.add_argument("--project", metavar="DIR",
                        help="instead of --images: a slide project's accepted corrections (docs/projects.md)")
    parser.add_argument("--masks", default=None,
                        help="folder of masks, label images or QuPath GeoJSON exports (default: --images)")
    parser.add_argument("--out",
                        help="model-store folder (a new version vNNNN.safetensors is written inside) "
                        "or a new .safetensors file (default with --project: the project's model store)")
    parser.add_argument("--sam", default=None,
                        help="SAM name (vit_b, vit_l, vit_h, a domain SAM such as vit_b_histopathology: see `download --help`; "
                        "tiny) or checkpoint file (default: --init's SAM, else vit_b)")
    parser.add_argument("--init", help="checkpoint to fine-tune from (warm start)")
    _add_budget_args(parser)
    _add_model_args(parser)
    add_precision_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    from .class_options import add_class_args

    add_class_args(parser)
    from .resolution import add_resolution_args

    add_resolution_args(parser, what="the images (slides or TIFF pyramids); the model records it")
    parser.set_defaults(func=_run)


def _add_budget_args(parser) -> None:
    """How long and on what: steps, epochs, time, augmentation, optimiser, validation."""
    parser.add_argument("--steps", type=non_negative_int, default=None,
                        help="optimiser steps for g (default: the training budget, or from --epochs)")
    parser.add_argument("--h-steps", type=non_negative_int, default=None,
                        help="optimiser steps for h (default: the training budget, or from --h-epochs; 0 skips h)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="instead of --steps: passes over the images for g (at least --min-steps steps)")
    parser.add_argument("--h-epochs", type=non_negative_int, default=None,
                        help="passes for h (default: like --epochs; 0 skips h)")
    parser.add_argument("--min-steps", type=non_negative_int, default=100,
                        help="floor of steps per stage for --epochs and for early stopping (default 100)")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                        help=f"seconds of training for both stages, encoding excluded (default {DEFAULT_TIME_LIMIT:g}; "
                        "0: none)")
    parser.add_argument("--preset", default=None,
                        help="augmentation preset: default, none, or the paper's glas, monuseg, polyps "
                        "(docs/training.md lists what each does)")
    parser.add_argument("--affine", action="store_true",
                        help="also warp g's input, the cached SAM embedding and the target by a random affine "
                        "(approximate: SAM would compute a different embedding for a warped image)")
    parser.add_argument("--joint", action="store_true", help="train h together with g instead of after it (g frozen)")
    parser.add_argument("--logit-gain", type=_positive_float, default=None,
                        help="factor on SAM's decoder logits in g's loss (default: automatic, 1 when they are "
                        "already large; 1: the paper's loss)")
    parser.add_argument("--window", type=non_negative_int, default=None,
                        help="cut images larger than this into windows of this size (default: the segmentation "
                        "tile size; 0: never)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="images per step (default 4 on CPU, 10 on GPU)")
    parser.add_argument("--lr", type=_positive_float, default=3e-4, help="Adam learning rate (default 3e-4)")
    parser.add_argument("--patience", type=non_negative_int, default=10,
                        help="early stopping patience in validations (0: off)")
    parser.add_argument("--val-fraction", type=_fraction, default=0.2, help="share of images held out (default 0.2)")
    parser.add_argument("--val-images", help="explicit validation images (instead of a split)")
    parser.add_argument("--val-masks", help="masks of --val-images")


def _add_model_args(parser) -> None:
    """Which g, its input, the cached variants, channels, device, and the depth adapters."""
    parser.add_argument("--generator", default=None,
                        help="prompt generator (default hardnet_small on CPU, hardnet85 on GPU; resnet18 starts "
                        "from ImageNet weights, downloaded once)")
    parser.add_argument("--input-size", type=_input_size, default=None,
                        help="g's input size, a multiple of 16 up to 4096 (default 256 on CPU, 512 on GPU)")
    parser.add_argument("--g-input", choices=("rgb", "rgb_norm", "hed"), default=None,
                        help="what g reads of a new model's image: rgb, rgb_norm (colour standardised per image) "
                        "or hed (haematoxylin/eosin optical density, standardised per image); default: see "
                        "docs/training.md; a warm start keeps its own")
    parser.add_argument("--variants", help="comma-separated cached geometric variants, e.g. identity,hflip,vflip,rot90")
    parser.add_argument("--no-augment", action="store_true", help="no colour jitter or affine (any preset)")
    parser.add_argument("--channels", type=channel_list, default=None,
                        help="comma-separated channels to use (1 gray, or 2-3 as R,G,B)")
    parser.add_argument("--pretrained-backbone", help="ImageNet HarDNet weights for a new g")
    parser.add_argument("--cache-dir", help="keep SAM embeddings on disk here, for later runs")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    parser.add_argument("--depth-adapters", action="store_true",
                        help="3D stacks (Z×Y×X, Z×Y×X×3 or Z×Y×X×C): train adapters in SAM's image encoder that see "
                        "neighbouring slices, with g and h; each step re-encodes a window of slices (docs/depth.md)")
    parser.add_argument("--depth-window", type=positive_int, default=None,
                        help="slices per window of the depth adapters (default 5)")
    parser.add_argument("--depth-kind", choices=("depth_mlp", "dconv"), default=None,
                        help="depth adapter: depth_mlp (default, depth-fused MLP) or dconv (depth-wise 3D conv)")
