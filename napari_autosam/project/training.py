"""Training data of a project: every accepted correction of its slides, at the resolution they were made at."""

from __future__ import annotations

from .folder import Project, ProjectError


def correction_samples(project: Project, *, channels=None, classes=None):
    """Samples of the newest revision of every correction of the project's slides.

    Returns
    -------
    (samples, resolution dict or None)
        ``resolution``: the working resolution the corrections share (``Resolution.to_dict`` form,
        recorded in the model), None when they were made at level 0 of unscaled images.

    Raises
    ------
    ProjectError
        No corrections yet, or corrections made at different resolutions (one line).
    """
    from ..training.data import samples_from_arrays

    entries = project.corrections()
    if not entries:
        raise ProjectError(f"the project {project.root} has no accepted corrections yet: correct a region of a slide "
                           "and accept it first")
    resolutions = {_key(e.extra.get("resolution")) for e in entries}
    if len(resolutions) > 1:
        shown = ", ".join(sorted(str(dict(r)) if r else "level 0" for r in resolutions))
        raise ProjectError(f"the corrections of {project.root} were made at different resolutions ({shown}); "
                           "a model learns one: train on the slides' annotations with --images and --mpp instead")
    store = project.annotations
    images, masks, names = [], [], []
    for entry in entries:
        image, mask = store.load(entry)
        images.append(image)
        masks.append(mask)
        names.append(f"{entry.extra.get('project_slide')}:{entry.name}")
    samples = samples_from_arrays(images, masks, names, channels=channels, classes=classes)
    shared = dict(next(iter(resolutions)) or ())
    resolution = {k: v for k, v in shared.items() if v is not None} or None
    return samples, resolution


def _key(resolution) -> tuple | None:
    return tuple(sorted(resolution.items())) if isinstance(resolution, dict) else None
