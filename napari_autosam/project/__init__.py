"""Slide projects: slides, their labels, corrections, review scores and models kept together across sessions.

See :mod:`napari_autosam.project.folder` for the folder's layout and docs/projects.md for users.
No napari or Qt here.
"""

from .fingerprint import Fingerprint, fingerprint
from .folder import FORMAT, VERSION, Project, ProjectError, ProjectSlide, SlideChanged

__all__ = ["FORMAT", "VERSION", "Fingerprint", "Project", "ProjectError", "ProjectSlide", "SlideChanged", "fingerprint"]
