"""The one place where errors become what a user sees.

A ``DomainError``'s message is written for users and shown as it is. Anything else is a bug: its traceback
goes to the log under a short reference, and the user sees only "Something went wrong (reference ...)",
never a stack trace. ``user_action`` does this for Gradio handlers, ``install_error_handlers`` for FastAPI.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from db.errors import Conflict, DomainError, NotFound, PermissionDenied

log = logging.getLogger("surgreview.errors")
F = TypeVar("F", bound=Callable[..., Any])
STATUS = {PermissionDenied: 403, NotFound: 404, Conflict: 409}


def unexpected(exc: BaseException) -> str:
    """Log ``exc`` with a new reference and return the message a user may see."""
    reference = uuid.uuid4().hex[:8]
    log.error("unexpected error (reference %s)", reference, exc_info=exc)
    return f"Something went wrong (reference {reference})"


def as_domain_error(exc: Exception) -> DomainError | None:
    """The user-facing reading of a database refusal that is not a bug: two people saving the same thing
    at once (a unique or one-current rule refused the second), a value the database cannot keep (too long
    for its column, a NUL byte), or the database not answering."""
    if isinstance(exc, IntegrityError):
        log.info("concurrent write refused: %s", exc.orig)
        return Conflict("Someone saved the same item at the same moment. Nothing of yours was stored; "
                        "reload it and try again.")
    if isinstance(exc, DataError):  # the last line of defence: services check lengths and characters first
        log.warning("database refused a value: %s", exc.orig)
        return DomainError("A value you entered is too long or holds characters the database cannot store "
                           "(such as a NUL byte). Nothing was stored; shorten or correct it and try again.")
    if isinstance(exc, OperationalError):
        log.warning("database unavailable: %s", exc.orig)
        return DomainError("The database is not answering right now. Nothing was stored; "
                           "what you entered is still on the page, so try again in a moment.")
    return None


def as_gradio_error(exc: Exception) -> gr.Error:
    """The gr.Error to raise for ``exc``: its own message for domain errors, a reference otherwise."""
    if isinstance(exc, gr.Error):
        return exc
    exc = as_domain_error(exc) or exc
    if isinstance(exc, DomainError):
        return gr.Error(str(exc))
    return gr.Error(unexpected(exc))


def user_action(fn: F) -> F:
    """Wrap a Gradio handler (function, generator, coroutine or async generator) so that every error
    reaches the user as a gr.Error with a safe message. The signature is kept for Gradio's inspection."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except Exception as exc:
                raise as_gradio_error(exc) from exc
        return async_gen_wrapper  # type: ignore[return-value]
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise as_gradio_error(exc) from exc
        return async_wrapper  # type: ignore[return-value]
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise as_gradio_error(exc) from exc
        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise as_gradio_error(exc) from exc
    return wrapper  # type: ignore[return-value]


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    domain = as_domain_error(exc)
    if domain is not None:
        return await _domain_error(request, domain)
    return JSONResponse({"detail": unexpected(exc)}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Answer DomainError with its message (403/404/409/400) and anything else with a 500 and a reference."""
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(Exception, _unexpected_error)
