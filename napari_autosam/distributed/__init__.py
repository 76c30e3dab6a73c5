"""Scale-out: batch segmentation on a ``dask.distributed`` cluster and multi-process training with torch DDP.

Nothing here is imported unless asked for: :mod:`.dask_segment` needs the
optional ``distributed`` extra, :mod:`.ddp` only torch.  :mod:`.options`
adds the command-line switches without importing dask.
"""
