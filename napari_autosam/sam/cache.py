"""Cache SAM image embeddings in memory and on disk, keyed by image content and SAM.

SAM's image encoder is >95 % of the compute, so every image is encoded
once per SAM: training steps, re-segmentation after fine-tuning and
interactive prompts all read the cached ``1×256×64×64`` embedding.

The key is a hash of the RGB pixels (shape included) and a fingerprint of
the SAM weights, so a different SAM, or a changed image, never gets a stale
embedding.  On disk each embedding is one safetensors file under
``<directory>/<sam fingerprint>/``, written atomically.  Entries are checked
when read (``1×256×64×64`` floating point, every value finite); a damaged or foreign
entry is deleted and the embedding computed again.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..io.atomic import atomic_path, remove_stale_parts_in
from ..progress import Stopwatch, Task, nested, run
from .embedding import embed_images

#: Shape of one cached embedding.
EMBEDDING_SHAPE = (1, 256, 64, 64)


def valid_embedding(embedding) -> bool:
    """True for a finite floating-point ``1×256×64×64`` tensor (what the cache stores)."""
    return (isinstance(embedding, torch.Tensor) and tuple(embedding.shape) == EMBEDDING_SHAPE
            and embedding.dtype.is_floating_point and bool(torch.isfinite(embedding).all()))


def sam_fingerprint(sam) -> str:
    """Short hash naming a SAM's weights: variant plus the bytes of its patch embedding."""
    weight = sam.image_encoder.patch_embed.proj.weight.detach().float().cpu().numpy()
    digest = hashlib.sha1(weight.tobytes()).hexdigest()[:12]
    from .registry import sam_identity

    return f"{sam_identity(sam).variant}-{digest}"


def image_key(image: np.ndarray) -> str:
    """Content hash of an RGB uint8 image (shape and pixels)."""
    image = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{image.shape}{image.dtype}".encode())
    h.update(memoryview(image).cast("B"))
    return h.hexdigest()


class EmbeddingCache:
    """SAM embeddings of RGB uint8 images, computed once.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam
        The frozen SAM whose encoder makes the embeddings.
    directory : path or None
        Where to keep embeddings on disk; None keeps them in memory only.
    max_items : int
        Embeddings held in memory (4 MiB each); the least recently used go first.
    """

    def __init__(self, sam, directory: str | os.PathLike | None = None, *, max_items: int = 256) -> None:
        self.sam = sam
        self.fingerprint = sam_fingerprint(sam)
        self.directory = Path(directory) / self.fingerprint if directory is not None else None
        if self.directory is not None:
            remove_stale_parts_in(self.directory)  # what runs killed while writing an entry left
        self.max_items = max_items
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encoded = 0  # how many images this cache had to run the encoder for

    def _remember(self, key: str, embedding: torch.Tensor) -> None:
        self._memory[key] = embedding
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    def _load(self, key: str, remember: bool = True) -> torch.Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.directory is None:
            return None
        path = self.directory / f"{key}.safetensors"
        if not path.is_file():
            return None
        try:
            embedding = load_file(str(path))["embedding"]
        except (SafetensorError, OSError, KeyError, ValueError):
            embedding = None
        if not valid_embedding(embedding):
            path.unlink(missing_ok=True)  # a damaged or foreign entry is recomputed, not trusted
            return None
        if remember:
            self._remember(key, embedding)
        return embedding

    def _store(self, key: str, embedding: torch.Tensor, remember: bool = True) -> None:
        if remember or self.directory is None:
            self._remember(key, embedding)
        if self.directory is not None:
            with atomic_path(self.directory / f"{key}.safetensors", owned=True) as tmp:
                save_file({"embedding": embedding.contiguous()}, str(tmp))

    def __contains__(self, image: np.ndarray) -> bool:
        return self._load(image_key(image)) is not None

    def embed_many(self, images: Sequence[np.ndarray], *, batch_size: int = 1,
                   remember: bool = True) -> Task[torch.Tensor]:
        """``N×256×64×64`` embeddings (CPU, float32), encoding only the images not cached yet.

        A generator yielding ``encode`` progress; the step counts all
        images, cached ones included, so a bar moves smoothly.
        ``remember=False`` (with a directory) keeps new embeddings on disk
        only, not in memory: the many tiles of a big image would otherwise
        fill the in-memory part (4 MiB each).
        """
        keys = [image_key(image) for image in images]
        found = {k: e for k in dict.fromkeys(keys) if (e := self._load(k, remember)) is not None}
        missing = [i for i, k in enumerate(keys) if k not in found and keys.index(k) == i]
        clock = Stopwatch(len(images))
        done = len(images) - len(missing)
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            embeddings = yield from nested(embed_images(self.sam, [images[i] for i in chunk], batch_size=batch_size))
            for i, emb in zip(chunk, embeddings):
                found[keys[i]] = emb[None].clone()
                self._store(keys[i], found[keys[i]], remember)
            self.encoded += len(chunk)
            done += len(chunk)
            yield clock.event("encode", done, f"SAM embeddings: {done}/{len(images)}")
        return torch.cat([found[k] for k in keys]) if keys else torch.empty(0, 256, 64, 64)

    def get(self, image: np.ndarray) -> torch.Tensor:
        """``1×256×64×64`` embedding of one RGB uint8 image."""
        return run(self.embed_many([image]))

    def clear_memory(self) -> None:
        self._memory.clear()
