"""Fine-tuning engine: train the prompt generator g (and the surrogate h) on image/mask pairs.

>>> from napari_autosam.progress import run
>>> from napari_autosam.sam.registry import load_sam
>>> from napari_autosam.training import TrainConfig, load_samples, train
>>> sam = run(load_sam("tiny"))                                    # doctest: +SKIP
>>> samples = load_samples("data/images", "data/masks")          # doctest: +SKIP
>>> result = run(train(sam, samples, config=TrainConfig(epochs=20), out="models/"))  # doctest: +SKIP

See docs/training.md.  No napari or Qt here.
"""

from .augment import D4, Augmentation
from .config import TrainConfig
from .data import Sample, TrainingDataError, load_samples, samples_from_arrays, samples_from_pair, split_samples
from .presets import PRESETS, Preset, get_preset, preset_names
from .scoring import Evaluation, Scores
from .start import TrainResult, initial_model
from .train_kinds import evaluate, train

__all__ = [
    "D4",
    "PRESETS",
    "Augmentation",
    "Evaluation",
    "Preset",
    "Sample",
    "Scores",
    "TrainConfig",
    "TrainResult",
    "TrainingDataError",
    "evaluate",
    "get_preset",
    "initial_model",
    "load_samples",
    "preset_names",
    "samples_from_arrays",
    "samples_from_pair",
    "split_samples",
    "train",
]
