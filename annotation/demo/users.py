"""Demo accounts: one per role (three surgeon reviewers), sharing one password, created only when absent."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.users import create_user, find_user

DEMO_USERS: dict[str, tuple[str, ...]] = {
    "admin": ("admin",),
    "surgeon1": ("reviewer",),
    "surgeon2": ("reviewer",),
    "surgeon3": ("reviewer",),
    "annotator1": ("annotator",),
    "chief": ("approver",),
    "educator": ("educator",),
    "resident1": ("resident",),
}


def ensure_demo_users(session: Session, password: str, *, actor: str = "system") -> list[str]:
    """Create the demo accounts that do not exist yet with ``password``; existing ones are left as they are.
    Returns the usernames created."""
    created = []
    for username, roles in DEMO_USERS.items():
        if find_user(session, username) is None:
            create_user(session, username, password=password, roles=roles, by=actor)
            created.append(username)
    return created
