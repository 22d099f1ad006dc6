"""The app shell's page-load handlers, called as Gradio calls them (with a gr.Request naming the user):
tabs follow roles, a user without a role sees nothing, a disabled user is told to sign in again."""

from __future__ import annotations

import gradio as gr
import pytest

from app.main import TABS, build_blocks
from db.users import create_user, disable
from tests.web_helpers import PASSWORD, make_services


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("shell") / "data")
    with services.db.session_scope() as session:
        for name, roles in {"root": ("admin",), "norole": (), "gone": ("reviewer",)}.items():
            create_user(session, name, password=PASSWORD, roles=roles)
        disable(session, "gone")
    blocks = build_blocks(services)
    handlers = {}
    for block_fn in blocks.fns.values():
        handlers.setdefault(block_fn.name, block_fn.fn)
    yield handlers
    services.close()


def test_the_header_names_the_user_and_tabs_follow_roles(shell):
    header, *tabs = shell["show_allowed"](gr.Request(username="root"))
    assert "Signed in as **root** (admin)" in header.value and "(/logout)" in header.value
    # Every tab an admin may use, and only those (the Review queue is for reviewers only).
    assert [tab.visible for tab in tabs] == [bool(module.ROLES & {"admin"}) for module in TABS]
    assert sum(tab.visible for tab in tabs) >= 3


def test_a_user_without_a_role_sees_no_tab_and_no_counts(shell):
    header, *tabs = shell["show_allowed"](gr.Request(username="norole"))
    assert "(no role)" in header.value and not any(tab.visible for tab in tabs)
    assert shell["current_overview"](gr.Request(username="norole")) == ""
    assert "cases" in shell["current_overview"](gr.Request(username="root"))


@pytest.mark.parametrize("username", ["gone", "nobody", None])
def test_a_disabled_or_unknown_user_is_told_to_sign_in_again(shell, username):
    with pytest.raises(gr.Error, match="sign in again"):
        shell["show_allowed"](gr.Request(username=username))
