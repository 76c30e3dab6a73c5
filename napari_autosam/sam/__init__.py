"""Frozen Segment Anything: checkpoints, loading and image embeddings."""

from ._lean_import import defer_package_init

defer_package_init("segment_anything")  # its modelling code only: no predictor, no torchvision at start-up
