"""``napari-autosam project``: create a slide project, add, remove and list its slides, prune what is left over."""

from __future__ import annotations

import json
import sys

from . import CommandError


def _open(folder):
    from ..project import Project

    return Project.open(folder)


def _create(args) -> int:
    from ..project import Project, ProjectError

    try:
        project = Project.create(args.dir)
    except ProjectError as exc:
        raise CommandError(str(exc)) from None
    print(f"created the project {project.root}")
    for path in args.slides:
        _add_one(project, path)
    return 0


def _add_one(project, path) -> None:
    from ..io.slides import is_slide_path

    if not is_slide_path(path):
        print(f"note: {path} does not look like a slide or image file; added anyway", file=sys.stderr)
    slide = project.add(path)
    print(f"{slide.id}\t{slide.path}")


def _add(args) -> int:
    project = _open(args.dir)
    for path in args.slides:
        _add_one(project, path)
    return 0


def _remove(args) -> int:
    project = _open(args.dir)
    for key in args.slides:
        slide, removed = project.remove(key)
        print(f"removed {slide.id} ({slide.path}); deleted {len(removed)} file(s) or folder(s) the project made "
              "for it; the slide file is untouched")
    return 0


def _list(args) -> int:
    project = _open(args.dir)
    rows = project.summary()
    models = project.active_models()
    if args.json:
        print(json.dumps({"project": str(project.root), "slides": rows, "active_models": models,
                          "orphans": [str(p) for p in project.orphans()]}, indent=2))
        return 0
    print(f"project {project.root}: {len(rows)} slide(s)")
    for row in rows:
        labels = ", ".join(row["labels"]) or "no labels"
        state = "" if row["state"] == "ok" else f"  !! {row['state']}"
        print(f"  {row['id']}\t{row['path']}\t{labels}; {row['corrections']} correction(s){state}")
    for lineage, version in models.items():
        print(f"  model ({lineage}): {version} active")
    orphans = project.orphans()
    if orphans:
        print(f"  {len(orphans)} left-over file(s) of removed slides: `napari-autosam project prune {project.root}`")
    return 0


def _prune(args) -> int:
    project = _open(args.dir)
    if args.dry_run:
        orphans = project.orphans()
        for path in orphans:
            print(path)
        print(f"{len(orphans)} left-over file(s) or folder(s); run without --dry-run to delete them", file=sys.stderr)
        return 0
    removed = project.prune()
    for path in removed:
        print(f"deleted {path}")
    print(f"{len(removed)} left-over file(s) or folder(s) deleted", file=sys.stderr)
    return 0


def _relink(args) -> int:
    project = _open(args.dir)
    slide = project.relink(args.slide, args.path)
    print(f"{slide.id} now reads {slide.path}")
    return 0


def training_data(args, channels, classes):
    """``train --project``: the project's corrections as ``(samples, resolution, validation samples, project)``."""
    from ..project.training import correction_samples

    project = _open(args.project)
    if args.val_images:
        raise CommandError("--project holds out a share of its corrections for validation; leave out --val-images")
    samples, resolution = correction_samples(project, channels=channels, classes=classes)
    return samples, resolution, None, project


def project_inputs(folder, inputs) -> tuple:
    """``segment --project``: each input added to the project (when new) and checked; ``(project, [(path, labels
    folder, slide id), …])``.  A replaced slide is refused (one line) before any work."""
    from pathlib import Path

    project = _open(folder)
    planned = []
    for given in inputs:
        slide = project.add(given)
        planned.append((project.check(slide.id), project.labels_dir(slide.id), slide.id))
    paths = [str(path) for path, _, _ in planned]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise CommandError(f"{', '.join(Path(p).name for p in twice)} given more than once")
    return project, planned


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "project", help="a slide project: slides with their labels, corrections and models (docs/projects.md)",
        description="Keep the slides you work on, with their labels, corrections, review scores and models, in one "
        "folder of plain files (docs/projects.md).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, func, help_text in (
        ("create", _create, "make a new project folder (and add slides to it)"),
        ("add", _add, "add slides"),
        ("remove", _remove, "take slides out and delete what the project made for them"),
        ("list", _list, "the slides, their labels and corrections, the active model"),
        ("prune", _prune, "delete what removed slides left behind"),
        ("relink", _relink, "point a slide at its file's new place (the same file)"),
    ):
        sub = actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        sub.add_argument("dir", metavar="PROJECT", help="the project folder")
        sub.set_defaults(func=func)
        if name in ("create", "add"):
            sub.add_argument("slides", nargs="*" if name == "create" else "+", metavar="SLIDE",
                             help="slide files (SVS, NDPI, TIFF, OME-Zarr, …)")
        elif name == "remove":
            sub.add_argument("slides", nargs="+", metavar="SLIDE", help="slide ids, paths or file names")
        elif name == "list":
            sub.add_argument("--json", action="store_true", help="print JSON")
        elif name == "prune":
            sub.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
        elif name == "relink":
            sub.add_argument("slide", metavar="SLIDE", help="slide id, old path or file name")
            sub.add_argument("path", metavar="NEW_PATH", help="where the same file is now")
