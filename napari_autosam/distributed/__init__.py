"""Scale-out: batch segmentation on a ``dask.distributed`` cluster; training shared by ``torchrun`` processes.

Nothing here is imported unless asked for: :mod:`.dask_segment` needs the
optional ``distributed`` extra, as does :mod:`.dask_tiles`, which spreads
one big slide's tiles over the workers (their tasks: :mod:`.tile_tasks`);
:mod:`.options` adds the command-line switches; :mod:`.ddp` joins the
processes of a ``torchrun`` start and :mod:`.sharded` shares one training
run between them (with :mod:`.sync_batchnorm`), neither importing dask.
"""
