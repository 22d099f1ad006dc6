"""Domain errors: the message of each is written for the person using the app and is safe to show them.

``app/errors.py`` is the one place that turns these into user messages (Gradio) or HTTP answers (FastAPI).
Anything else that escapes a user action is a bug: it is logged and shown only as a reference number.
"""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the domain refused an action; ``str(error)`` says why, in words a user understands."""


class PermissionDenied(DomainError):
    """The acting user may not do this (unknown, disabled, or without the role)."""


class NotFound(DomainError):
    """The thing asked for does not exist (or the user may not know that it does)."""


class Conflict(DomainError):
    """The action clashes with what is stored (a duplicate, a stale version)."""
