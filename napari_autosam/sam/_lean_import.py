"""Import segment-anything's modelling code without its predictor and its torchvision import.

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
"""

from __future__ import annotations

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
