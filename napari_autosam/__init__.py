"""napari-autosam: automatic SAM segmentation with a learned prompt generator.

The model, training, inference and IO code under this package never import
napari or Qt; only :mod:`napari_autosam._qt` does.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
