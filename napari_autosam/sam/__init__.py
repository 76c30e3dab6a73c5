"""Frozen Segment Anything: checkpoints, loading and image embeddings."""
