"""Reading images and masks, and writing files safely (no napari, no Qt)."""
