"""Scale-out: batch segmentation on a ``dask.distributed`` cluster; ``torchrun`` detection for training.

Nothing here is imported unless asked for: :mod:`.dask_segment` needs the
optional ``distributed`` extra; :mod:`.options` adds the command-line
switches and :mod:`.ddp` refuses multi-process training, neither importing dask.
"""
