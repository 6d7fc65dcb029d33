"""Checks of the user's own text, shared by the CLI (before anything starts) and the stages, and the slug a
text is filed under (a batch's run folders, candidate ids).

A topic or script that fails here is refused with a message naming what is
wrong; callers add where it came from (`--topic`, the theme stage).
"""

from __future__ import annotations

import re
import unicodedata

MAX_TOPIC_CHARS = 200


class TextError(ValueError):
    """User text that cannot be used; the message says why."""


def looks_binary(text: str) -> bool:
    """True for text that is not human language: NULs, control bytes, decode damage, or almost no letters."""
    if "\x00" in text or "\ufffd" in text:
        return True
    if any(unicodedata.category(c) in ("Cc", "Co", "Cs") and c not in "\n\r\t\f" for c in text):
        return True
    visible = [c for c in text if not c.isspace()]
    # Too little text to judge by proportions: "1969" is a fine topic.
    if len(visible) < 20:
        return False
    return sum(1 for c in visible if c.isalpha()) / len(visible) < 0.5


def tidy_topic(topic: str) -> str:
    """The topic with its whitespace tidied; TextError when it is empty, too long, unreadable or wordless."""
    if looks_binary(topic):
        raise TextError("the topic is not readable text (binary or control characters); give a plain subject")
    tidy = " ".join(topic.split())
    if not tidy:
        raise TextError('the topic is empty; give a subject such as "Why octopuses have three hearts"')
    if len(tidy) > MAX_TOPIC_CHARS:
        raise TextError(
            f"the topic is {len(tidy)} characters; a topic is a subject of at most {MAX_TOPIC_CHARS} characters"
            " (to narrate your own text, put it in a file and pass --script FILE)"
        )
    if not re.search(r"\w", tidy):
        raise TextError(f'the topic {tidy!r} has no words; give a subject such as "How volcanoes form"')
    return tidy


def slug(text: str, most: int, empty: str = "") -> str:
    """`text` as lowercase ASCII words joined by hyphens, at most `most` characters; `empty` when none is left."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:most] or empty
