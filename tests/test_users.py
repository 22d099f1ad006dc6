"""User accounts on real SQLite and PostgreSQL: passwords, roles, look-alike names, SSO identities, audit."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from db import users
from db.errors import Conflict, DomainError, PermissionDenied
from db.schema import AuditEvent, User
from db.users import (
    Actor,
    actor,
    authenticate,
    create_user,
    disable,
    list_users,
    oidc_user,
    require,
    set_password,
    set_roles,
)

PASSWORD = "correct horse battery"


def _events(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_a_user_signs_in_with_the_right_password_only(session):
    user = create_user(session, "alice", password=PASSWORD, roles=["reviewer"])
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert authenticate(session, "alice", PASSWORD) is user
    assert authenticate(session, " Alice ", PASSWORD) is user  # the same canonical name
    assert authenticate(session, "alice", PASSWORD + "x") is None
    assert authenticate(session, "alice", "") is None
    assert authenticate(session, "bob", PASSWORD) is None


def test_unknown_users_cost_a_password_check_too(session, monkeypatch):
    create_user(session, "alice", password=PASSWORD)
    calls = []
    real = users._hasher

    class Counting(PasswordHasher):
        def verify(self, hash, password):
            calls.append(hash)
            return real.verify(hash, password)

    monkeypatch.setattr(users, "_hasher", Counting())
    assert authenticate(session, "nobody", PASSWORD) is None
    assert authenticate(session, "not a valid name!", PASSWORD) is None
    assert len(calls) == 2 and all(h.startswith("$argon2id$") for h in calls)


def test_a_disabled_user_cannot_sign_in_or_act(session):
    create_user(session, "alice", password=PASSWORD, roles=["reviewer"])
    disable(session, "alice", by="cli:tester")
    assert authenticate(session, "alice", PASSWORD) is None
    with pytest.raises(PermissionDenied):
        actor(session, "alice")
    assert [e.actor_label for e in _events(session, "user.disable")] == ["cli:tester"]


def test_a_hash_with_old_parameters_is_replaced_at_sign_in(session, monkeypatch):
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    user = create_user(session, "alice", password=PASSWORD)
    weak = user.password_hash
    monkeypatch.setattr(users, "_hasher", PasswordHasher())
    assert authenticate(session, "alice", PASSWORD) is user
    assert user.password_hash != weak and not PasswordHasher().check_needs_rehash(user.password_hash)
    assert len(_events(session, "user.password_rehash")) == 1
    assert authenticate(session, "alice", PASSWORD) is user
    assert len(_events(session, "user.password_rehash")) == 1  # once only


def test_roles_are_set_replaced_and_checked(session):
    create_user(session, "alice", password=PASSWORD, roles=["reviewer", "educator"])
    assert actor(session, "alice").roles == {"reviewer", "educator"}
    set_roles(session, "alice", ["annotator", "reviewer"])
    session.expire_all()
    assert actor(session, "alice").roles == {"annotator", "reviewer"}
    with pytest.raises(DomainError, match="Unknown role superuser"):
        set_roles(session, "alice", ["reviewer", "superuser"])
    with pytest.raises(DomainError, match="Unknown role"):
        create_user(session, "bob", password=PASSWORD, roles=["root"])
    assert session.scalar(select(User).where(User.username == "bob")) is None
    assert actor(session, "alice").roles == {"annotator", "reviewer"}
    [event] = _events(session, "user.roles")
    assert event.payload["before"] == ["educator", "reviewer"] and event.payload["after"] == ["annotator", "reviewer"]


@pytest.mark.parametrize("look_alike", ["Admin", "ADMIN", "ａｄｍｉｎ", "Ａｄｍｉｎ", "admin"])
def test_a_look_alike_of_an_existing_name_is_refused(session, look_alike):
    create_user(session, "admin", password=PASSWORD, roles=["admin"])
    with pytest.raises(Conflict, match="taken"):
        create_user(session, look_alike, password=PASSWORD)
    assert len(list_users(session)) == 1


def test_compatibility_characters_fold_to_the_same_name(session):
    create_user(session, "kate", password=PASSWORD)
    with pytest.raises(Conflict):
        create_user(session, "\u212aate", password=PASSWORD)  # KELVIN SIGN K


@pytest.mark.parametrize("bad", ["", "a b", "x" * 151, "bob@example.org", "<script>", "\u0430dmin", "ADM\u0130N",
                                 "tab\there", "admin\u200b"])
def test_invalid_usernames_are_refused(session, bad):
    # Cyrillic а and Turkish İ survive NFKC: outside a-z they cannot pass for Latin names.
    with pytest.raises(DomainError, match="username"):
        create_user(session, bad, password=PASSWORD)


def test_the_longest_name_and_the_shortest_password(session):
    assert create_user(session, "x" * 150, password="8 chars!").username == "x" * 150
    with pytest.raises(DomainError, match="at least 8"):
        create_user(session, "bob", password="7 chars")


def test_pseudonyms_are_random_unique_and_not_the_name(session):
    created = [create_user(session, f"user{i}", password=PASSWORD) for i in range(12)]
    pseudonyms = [u.pseudonym for u in created]
    assert len(set(pseudonyms)) == 12
    assert all(re.fullmatch(r"R-[0-9a-f]{4}", p) for p in pseudonyms)


def test_every_account_change_is_audited_without_secrets(session):
    admin = create_user(session, "root", password=PASSWORD, roles=["admin"])
    by = Actor(admin.id, "root", frozenset({"admin"}))
    user = create_user(session, "alice", password=PASSWORD, by=by)
    set_roles(session, "alice", ["reviewer"], by=by)
    set_password(session, "alice", "another password", by=by)
    disable(session, "alice", by=by)
    events = [e for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id)) if e.entity_id == str(user.id)]
    assert [e.action for e in events] == ["user.create", "user.roles", "user.password", "user.disable"]
    assert all(e.actor_id == admin.id and e.entity_type == "user" for e in events)
    text = repr([e.payload for e in events])
    assert PASSWORD not in text and "another password" not in text and "$argon2" not in text


def test_only_admins_manage_other_accounts(session):
    create_user(session, "alice", password=PASSWORD, roles=["reviewer"])
    bob = create_user(session, "bob", password=PASSWORD, roles=["reviewer"])
    as_bob = actor(session, "bob")
    with pytest.raises(PermissionDenied):
        set_roles(session, "bob", ["admin"], by=as_bob)
    with pytest.raises(PermissionDenied):
        set_password(session, "alice", "bob's choice", by=as_bob)
    with pytest.raises(PermissionDenied):
        create_user(session, "carol", password=PASSWORD, by=as_bob)
    set_password(session, "bob", "bob's new one", by=as_bob)  # one's own password is allowed
    assert authenticate(session, "bob", "bob's new one") is bob
    assert actor(session, "bob").roles == {"reviewer"}


def test_actor_and_require(session):
    create_user(session, "alice", password=PASSWORD, roles=["reviewer"])
    alice = actor(session, "ALICE")
    assert alice.username == "alice" and alice.has("reviewer", "admin") and not alice.has("admin")
    require(alice, "approver", "reviewer")
    with pytest.raises(PermissionDenied, match="admin"):
        require(alice, "admin")
    with pytest.raises(PermissionDenied):
        actor(session, "nobody")


def test_an_sso_identity_becomes_a_user_with_the_claimed_known_roles(session):
    user = oidc_user(session, "https://idp.example", "sub-1", username="J.Doe@Hospital.org",
                     roles=["reviewer", "superuser", "approver"], display_name="Jane Doe")
    assert user.username == "j.doe_hospital.org" and user.display_name == "Jane Doe"
    assert user.role_names == {"reviewer", "approver"} and user.password_hash is None
    assert authenticate(session, user.username, "") is None
    again = oidc_user(session, "https://idp.example", "sub-1", username="renamed", roles=None)
    assert again is user and again.role_names == {"reviewer", "approver"}  # None keeps the roles
    oidc_user(session, "https://idp.example", "sub-1", username="renamed", roles=[])
    assert user.role_names == set()
    assert [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))] == [
        "user.create", "user.roles", "user.roles"]


def test_an_sso_name_never_takes_over_a_local_account(session):
    local = create_user(session, "admin", password=PASSWORD, roles=["admin"])
    sso = oidc_user(session, "https://idp.example", "someone", username="Admin", roles=["resident"])
    assert sso.id != local.id and sso.username == "admin-2"
    other = oidc_user(session, "https://other.example", "someone", username="admin")
    assert other.username == "admin-3" and other.id != sso.id
    assert actor(session, "admin").roles == {"admin"}


def test_a_disabled_sso_user_is_refused(session):
    user = oidc_user(session, "https://idp.example", "sub-9", username="ann")
    disable(session, user.username)
    with pytest.raises(PermissionDenied, match="disabled"):
        oidc_user(session, "https://idp.example", "sub-9", username="ann")
