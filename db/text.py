"""Text that every database can store: PostgreSQL refuses NUL in text, and no driver encodes a lone
surrogate. Model output is untrusted and may hold either; it is stored with U+FFFD in their place."""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str | None) -> str | None:
    return None if text is None else _UNSTORABLE.sub("\ufffd", text)
