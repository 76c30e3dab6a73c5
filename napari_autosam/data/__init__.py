"""Data for training, tests, benchmarks and the demo: synthetic nuclei images with exact labels."""
