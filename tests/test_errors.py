"""Errors reach users in one shape: a domain error's own message, anything else a reference to the log."""

from __future__ import annotations

import asyncio
import logging
import re

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.errors import install_error_handlers, user_action
from db.errors import Conflict, DomainError, NotFound, PermissionDenied

REFERENCE = re.compile(r"^Something went wrong \(reference ([0-9a-f]{8})\)$")


def _plain(exc: Exception):
    @user_action
    def handler(x: int, request: gr.Request = None):
        raise exc
    return handler


def _generator(exc: Exception):
    @user_action
    def handler(x: int):
        yield x
        raise exc
    return handler


def _coroutine(exc: Exception):
    @user_action
    async def handler(x: int):
        raise exc
    return handler


def _async_generator(exc: Exception):
    @user_action
    async def handler(x: int):
        yield x
        raise exc
    return handler


def _run(kind: str, exc: Exception) -> None:
    if kind == "plain":
        _plain(exc)(1)
    elif kind == "generator":
        assert list(_generator(exc)(1)) == [1]
    elif kind == "coroutine":
        asyncio.run(_coroutine(exc)(1))
    else:
        async def drain() -> list[int]:
            return [item async for item in _async_generator(exc)(1)]
        asyncio.run(drain())


KINDS = ["plain", "generator", "coroutine", "async generator"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_domain_error_shows_its_message(kind):
    with pytest.raises(gr.Error) as raised:
        _run(kind, PermissionDenied("This needs the reviewer role."))
    assert raised.value.message == "This needs the reviewer role."


@pytest.mark.parametrize("kind", KINDS)
def test_a_bug_shows_a_reference_and_logs_the_traceback(kind, caplog):
    with caplog.at_level(logging.ERROR, logger="surgreview.errors"), pytest.raises(gr.Error) as raised:
        _run(kind, KeyError("secret internal detail"))
    match = REFERENCE.match(raised.value.message)
    assert match and "secret" not in raised.value.message
    [record] = caplog.records
    assert match.group(1) in record.getMessage() and record.exc_info[0] is KeyError


def test_the_wrapper_keeps_what_gradio_inspects():
    import inspect

    assert inspect.isgeneratorfunction(_generator(ValueError())) and inspect.isasyncgenfunction(
        _async_generator(ValueError()))
    assert inspect.iscoroutinefunction(_coroutine(ValueError()))
    assert list(inspect.signature(_plain(ValueError())).parameters) == ["x", "request"]


def test_gradio_errors_pass_through_unchanged():
    original = gr.Error("Pick a box first.")
    with pytest.raises(gr.Error) as raised:
        _plain(original)(1)
    assert raised.value is original


def test_fastapi_routes_answer_domain_errors_and_hide_bugs(caplog):
    app = FastAPI()
    install_error_handlers(app)
    errors = {"denied": PermissionDenied("no"), "missing": NotFound("gone"), "clash": Conflict("taken"),
              "rule": DomainError("bad input"), "bug": RuntimeError("password=hunter2")}

    @app.get("/{name}")
    def fail(name: str) -> None:
        raise errors[name]

    client = TestClient(app, raise_server_exceptions=False)
    expected = {"denied": (403, "no"), "missing": (404, "gone"), "clash": (409, "taken"), "rule": (400, "bad input")}
    for name, (status, detail) in expected.items():
        response = client.get(f"/{name}")
        assert (response.status_code, response.json()) == (status, {"detail": detail})
    with caplog.at_level(logging.ERROR, logger="surgreview.errors"):
        response = client.get("/bug")
    assert response.status_code == 500 and "hunter2" not in response.text and "Traceback" not in response.text
    reference = REFERENCE.match(response.json()["detail"]).group(1)
    assert any(reference in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_concurrent_write_refused_by_the_database_is_a_conflict_message():
    from sqlalchemy.exc import IntegrityError

    refused = IntegrityError("INSERT INTO judgments ...", {}, Exception("UNIQUE constraint failed"))
    with pytest.raises(gr.Error) as raised:
        _run("plain", refused)
    assert raised.value.message.startswith("Someone saved the same item at the same moment")
    assert "INSERT" not in raised.value.message and "UNIQUE" not in raised.value.message


def test_an_unreachable_database_says_so_and_that_input_is_kept():
    from sqlalchemy.exc import OperationalError

    down = OperationalError("SELECT 1", {}, Exception("connection refused"))
    with pytest.raises(gr.Error) as raised:
        _run("generator", down)
    assert "database is not answering" in raised.value.message and "refused" not in raised.value.message
