"""User-facing errors: one line that names the field, the value and the fix."""

from __future__ import annotations


class SimtrainError(Exception):
    """An error in the user's input. `str(err)` is one line meant for the terminal."""


def bad(field: str, value: object, problem: str, fix: str) -> SimtrainError:
    """Build the standard one-line error: `field = value: problem; fix`."""
    return SimtrainError(f"{field} = {value!r}: {problem}; {fix}")
