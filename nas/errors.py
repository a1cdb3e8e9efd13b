"""Errors the CLI reports as one line (``nas: error: ...``) instead of a traceback."""

from __future__ import annotations

from mobilevit import SpecError


class NasError(Exception):
    """Bad input or a failed step, described in one line that names the field, file or value."""


USER_ERRORS: tuple[type[Exception], ...] = (NasError, SpecError)
