"""Text that Postgres stores and people read: validators for free-text input fields.

Postgres refuses NUL in `text` (a 500 if it gets that far), and other control characters in a
name are never meant and make lookalikes. Use them as `AfterValidator`s on pydantic fields.
"""

import unicodedata
from typing import Final

_LINE_BREAKS_AND_TABS: Final = frozenset("\n\r\t")


def single_line(value: str) -> str:
    """Refuse every control character (names, titles)."""
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


def multi_line(value: str) -> str:
    """Refuse control characters other than tabs and line breaks (descriptions)."""
    if any(
        unicodedata.category(char) == "Cc" and char not in _LINE_BREAKS_AND_TABS for char in value
    ):
        raise ValueError("must not contain control characters other than tabs and line breaks")
    return value
