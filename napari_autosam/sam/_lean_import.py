"""Start-up shortcuts: segment-anything's modelling code without its predictor, SAMs built without random init.

``import segment_anything`` runs the package's ``__init__``, which imports
``SamPredictor`` and ``SamAutomaticMaskGenerator`` and through them
torchvision (and torchvision's ops pull in ``torch._dynamo``): 1-3 s of a
command's start-up for code the plugin does not use.  Before anything of
segment-anything is imported, :func:`defer_package_init` registers the
package module *without* running its ``__init__``; its submodules
(``segment_anything.modeling``, ``segment_anything.build_sam``) import as
usual.  The first access to a name of the package itself (e.g.
``from segment_anything import SamAutomaticMaskGenerator``) runs the real
``__init__`` then, so other code sees the ordinary package.

:func:`no_random_init` builds a module whose weights are about to be
replaced by a checkpoint's without filling them with random numbers first
(ViT-B: ~90 M values).  PyTorch's ``meta`` device would do that too, but
``torch.randn`` on ``meta`` (SAM's positional encoding) imports sympy and
~500 modules, which costs more than it saves.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys


def defer_package_init(name: str = "segment_anything") -> None:
    """Register package ``name`` unexecuted; its ``__init__`` runs on first attribute access."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)

    def complete(attribute: str):
        if attribute.startswith("__") and attribute != "__all__":
            raise AttributeError(attribute)
        module.__dict__.pop("__getattr__", None)
        spec.loader.exec_module(module)  # the package's own __init__, once
        return getattr(module, attribute)

    module.__getattr__ = complete
    sys.modules[name] = module


#: The initialisers PyTorch's layers call in ``reset_parameters``; all fill a tensor in place.
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "xavier_uniform_", "xavier_normal_")


@contextlib.contextmanager
def no_random_init():
    """Within this context ``torch.nn.init``'s random initialisers leave tensors as allocated.

    Only for modules whose every parameter is overwritten next (a checkpoint
    load that checks for missing keys); tensors are otherwise uninitialised.
    """
    import torch  # here, not at the top: this module is imported by ``napari-autosam --help``

    saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS}
    try:
        for name in _INITIALISERS:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)
