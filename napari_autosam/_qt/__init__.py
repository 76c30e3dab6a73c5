"""The napari widgets of napari-autosam: the only part of the package that imports napari and Qt."""
