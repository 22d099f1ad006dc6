"""User accounts: local passwords (argon2id), hospital SSO identities, roles, and the acting user.

Usernames are stored in one canonical form (NFKC, case-folded, ASCII letters, digits and ``._-``), so
"Admin" and full-width "ａｄｍｉｎ" are the same name and a look-alike of an existing user cannot be created.
Every write is audited in the caller's transaction; callers pass ``by`` (an ``Actor``, or a label such as
"cli:alice") and an ``Actor`` must hold the admin role to change someone else's account.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from db.audit import record
from db.errors import Conflict, DomainError, NotFound, PermissionDenied
from db.schema import ROLES, User, UserRole
from db.text import storable

USERNAME_MAX = 150
DISPLAY_NAME_MAX = 200  # User.display_name's width
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
_USERNAME = re.compile(r"[a-z0-9._-]{1,150}")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Actor:
    """Who is acting, as the domain sees them: id, canonical username and role names."""

    user_id: int
    username: str
    roles: frozenset[str]

    def has(self, *roles: str) -> bool:
        """True when the actor holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)


By = Actor | str


def require(actor: Actor, *roles: str) -> None:
    """Raise PermissionDenied unless ``actor`` holds one of ``roles``."""
    if not roles:
        raise ValueError("require() needs at least one role")
    if not actor.has(*roles):
        raise PermissionDenied(f"This needs the {' or '.join(roles)} role.")


def canonical_username(raw: str) -> str:
    """The stored form of a username (NFKC, case-folded); DomainError when it is not a valid name."""
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold())
    if not _USERNAME.fullmatch(name):
        raise DomainError(f"A username has 1 to {USERNAME_MAX} characters: letters a-z, digits, '.', '_' "
                          "or '-'.")
    return name


def _checked_roles(roles: Iterable[str]) -> set[str]:
    wanted = set(roles)
    unknown = wanted - set(ROLES)
    if unknown:
        raise DomainError(f"Unknown role {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}.")
    return wanted


def _checked_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise DomainError(f"A password has at least {PASSWORD_MIN} characters (and at most {PASSWORD_MAX}).")
    if storable(password) != password:  # a lone surrogate cannot be encoded for hashing
        raise DomainError("A password cannot hold NUL or a lone surrogate (half of an emoji).")
    return password


def _display_name(value: str | None) -> str | None:
    """A display name the database can keep: NUL and lone surrogates replaced, cut to its column's width
    (it is cosmetic; an identity provider's long name must not stop a sign-in)."""
    return None if value is None else storable(value)[:DISPLAY_NAME_MAX]


@cache
def _dummy_hash() -> str:
    """A hash to verify against when there is no user, so unknown names take as long as known ones."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _new_pseudonym(session: Session) -> str:
    """A random unused pseudonym such as "R-7f3a" (longer once short ones get crowded)."""
    for attempt in range(64):
        candidate = f"R-{secrets.token_hex(2 if attempt < 32 else 4)}"
        if session.scalar(select(User.id).where(User.pseudonym == candidate)) is None:
            return candidate
    raise Conflict("Could not find a free pseudonym; try again.")


def _audit(session: Session, action: str, by: By, user: User, payload: dict[str, Any] | None = None) -> None:
    actor_id, label = (by.user_id, by.username) if isinstance(by, Actor) else (None, by)
    record(session, action, actor_id=actor_id, actor_label=label, entity_type="user", entity_id=user.id,
           payload={"username": user.username, **(payload or {})})


def _may_manage(by: By, user: User | None = None) -> None:
    """Accounts are managed by admins, by trusted callers (CLI, system), or (passwords) by their owner."""
    if isinstance(by, Actor) and not (user is not None and by.user_id == user.id):
        require(by, "admin")


def find_user(session: Session, username: str) -> User | None:
    """The user whose canonical name matches ``username``, or None (also for invalid names)."""
    try:
        name = canonical_username(username.strip())
    except DomainError:
        return None
    return session.scalar(select(User).where(User.username == name))


def get_user(session: Session, username: str) -> User:
    """The user called ``username``; NotFound otherwise."""
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"No user {username!r}.")
    return user


def create_user(session: Session, username: str, *, password: str | None = None, roles: Iterable[str] = (),
                display_name: str | None = None, by: By = "system") -> User:
    """A new local account (password hashed with argon2id); Conflict when the canonical name is taken."""
    _may_manage(by)
    name = canonical_username(username)
    wanted = _checked_roles(roles)
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise Conflict(f"The username {name!r} is taken.")
    password_hash = _hasher.hash(_checked_password(password)) if password is not None else None
    user = User(username=name, display_name=_display_name(display_name), password_hash=password_hash,
                pseudonym=_new_pseudonym(session), is_active=True,
                roles=[UserRole(role=r) for r in sorted(wanted)])
    session.add(user)
    session.flush()
    _audit(session, "user.create", by, user, {"roles": sorted(wanted), "local": password is not None})
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active local user with this password, else None. Rehashes when the hash parameters changed."""
    user = find_user(session, username)
    ok = _verify(user.password_hash if user else None, password)
    if not ok or user is None or not user.is_active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        _audit(session, "user.password_rehash", "system", user)
    return user


def set_roles(session: Session, username: str, roles: Iterable[str], *, by: By = "system") -> User:
    """Replace the user's roles with ``roles`` (all must be known)."""
    _may_manage(by)
    user = get_user(session, username)
    _replace_roles(session, user, _checked_roles(roles), by)
    return user


def _replace_roles(session: Session, user: User, wanted: set[str], by: By) -> None:
    before = user.role_names
    if wanted == before:
        return
    user.roles = [r for r in user.roles if r.role in wanted]
    user.roles += [UserRole(role=r) for r in sorted(wanted - before)]
    session.flush()
    _audit(session, "user.roles", by, user, {"before": sorted(before), "after": sorted(wanted)})


def set_password(session: Session, username: str, password: str, *, by: By = "system") -> User:
    """Give the user a new local password (admins, trusted callers, or the user themselves)."""
    user = get_user(session, username)
    _may_manage(by, user)
    user.password_hash = _hasher.hash(_checked_password(password))
    _audit(session, "user.password", by, user)
    return user


def disable(session: Session, username: str, *, by: By = "system") -> User:
    """Stop the user from signing in; their open sessions end at their next request."""
    _may_manage(by)
    user = get_user(session, username)
    if user.is_active:
        user.is_active = False
        _audit(session, "user.disable", by, user)
    return user


def list_users(session: Session) -> list[User]:
    """Every user with roles loaded, by username."""
    return list(session.scalars(select(User).options(selectinload(User.roles)).order_by(User.username)))


def actor_of(user: User) -> Actor:
    """The Actor for a loaded user."""
    return Actor(user.id, user.username, frozenset(user.role_names))


def actor(session: Session, username: str) -> Actor:
    """The Actor called ``username``; PermissionDenied when unknown or disabled."""
    user = find_user(session, username)
    if user is None or not user.is_active:
        raise PermissionDenied("Your account is unknown or disabled; please sign in again.")
    return actor_of(user)


def _username_from_claim(claim: str, subject: str) -> str:
    """A valid username made from an identity provider's name (accents dropped, other characters -> _)."""
    decomposed = unicodedata.normalize("NFKD", claim)
    ascii_ish = "".join(c for c in decomposed if not unicodedata.combining(c))
    name = re.sub(r"[^a-z0-9._-]", "_", unicodedata.normalize("NFKC", ascii_ish).casefold())
    if name.strip("_."):
        return name[:USERNAME_MAX]
    return f"sso-{hashlib.sha256(subject.encode()).hexdigest()[:10]}"


def _free_username(session: Session, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever is unused: an SSO login never takes over a local user."""
    for n in range(1, 1000):
        suffix = "" if n == 1 else f"-{n}"
        candidate = base[:USERNAME_MAX - len(suffix)] + suffix
        if session.scalar(select(User.id).where(User.username == candidate)) is None:
            return candidate
    raise Conflict("Could not find a free username for this sign-in.")


def oidc_user(session: Session, issuer: str, subject: str, *, username: str, roles: Iterable[str] | None = None,
              display_name: str | None = None) -> User:
    """The user of this SSO identity, created on first sign-in. ``roles`` (unknown ones ignored) replace the
    stored roles when given; None keeps the roles an admin assigned. PermissionDenied for disabled users."""
    user = session.scalar(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject))
    by = f"sso:{issuer}"
    if user is None:
        user = User(username=_free_username(session, _username_from_claim(username, subject)),
                    display_name=_display_name(display_name or username), oidc_issuer=issuer, oidc_subject=subject,
                    pseudonym=_new_pseudonym(session), is_active=True, roles=[])
        session.add(user)
        session.flush()
        _audit(session, "user.create", by, user, {"roles": [], "sso": issuer})
    if not user.is_active:
        raise PermissionDenied("This account is disabled.")
    if roles is not None:
        _replace_roles(session, user, set(roles) & set(ROLES), by)
    return user
