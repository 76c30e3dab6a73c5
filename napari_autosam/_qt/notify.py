"""Messages to the user through napari's notification area: short lines, never a traceback dump."""

from __future__ import annotations

import logging

from napari.utils.notifications import show_error, show_info, show_warning

from ..progress import Cancelled

log = logging.getLogger("napari_autosam")


def describe(exc: BaseException, limit: int = 1200) -> str:
    """The exception's own message (our errors say what to do), without the traceback."""
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error(what: str, exc: BaseException) -> None:
    """Report that ``what`` failed because of ``exc``; the traceback goes to the log only.

    napari's toast shows the first line of a message, elided to its width, and
    the rest when expanded; so the first line is only what failed (short
    enough to be read whole) and the reason follows on the next lines.
    """
    if isinstance(exc, Cancelled):
        info(f"{what} cancelled.")
        return
    log.error("%s failed", what, exc_info=(type(exc), exc, exc.__traceback__))
    show_error(f"{what} failed:\n{describe(exc)}")


#: About as many characters as napari's toast shows on its one collapsed line.
TOAST_LINE = 48


def toast_text(message: str) -> str:
    """The message with its first sentence on a line of its own when the whole would not fit the toast.

    The toast shows the first line (elided) and the rest when expanded, so
    the gist ("Fine-tuning done: now using v0002.") is read whole.
    """
    if "\n" in message or len(message) <= TOAST_LINE:
        return message
    cut = message.find(". ")
    if 0 < cut < TOAST_LINE:
        return message[: cut + 1] + "\n" + message[cut + 2 :]
    return message


def info(message: str) -> None:
    log.info(message)
    show_info(toast_text(message))


def warning(message: str) -> None:
    log.warning(message)
    show_warning(toast_text(message))
