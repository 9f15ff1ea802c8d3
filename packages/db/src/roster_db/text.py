"""Text that Postgres stores and people read: string types for free-text input fields.

Postgres refuses NUL in `text` (a 500 if it gets that far), and other control characters in a
name are never meant and make lookalikes. `SingleLine` (names, titles) and `MultiLine`
(descriptions) validate a field and publish the same rule in its JSON schema as a `pattern`,
so that a client (or a schema-driven test) that follows the schema is never refused:

    GroupName = Annotated[str, SingleLine(min_length=1, max_length=100)]

`single_line` and `multi_line` are the bare checks, for use as `AfterValidator`s.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import AfterValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue

_LINE_BREAKS_AND_TABS: Final = frozenset("\n\r\t")

# The patterns are spelt with `\uXXXX` escapes, which ECMA-262 (JSON Schema), Python's `re` and
# Rust's `regex` read the same way. The validators below stay the rule; the patterns describe
# it, and tests compare the two character by character.

# Unicode category Cc: C0 controls, DEL and C1 controls.
_CONTROL: Final = r"\u0000-\u001f\u007f-\u009f"
# What pydantic's `strip_whitespace` trims: Rust's `str::trim`, Unicode's White_Space property.
_UNICODE_SPACES: Final = r"\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_TRIMMED: Final = rf"\t\n\u000b\u000c\r \u0085\u00a0{_UNICODE_SPACES}"
# What a trimmed value can neither start nor end with: controls and white space.
_NOT_AT_EDGES: Final = rf"\u0000-\u0020\u007f-\u00a0{_UNICODE_SPACES}"
# Cc less tab, line feed and carriage return.
_CONTROL_BUT_BREAKS: Final = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"


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


def single_line_pattern(*, min_length: int, max_length: int) -> str:
    """The strings `SingleLine(min_length=..., max_length=...)` accepts, as one expression.

    The field is trimmed before its length is counted, so the length is bounded here (around
    any amount of trimmed white space) rather than by `minLength`/`maxLength`, which would
    count the white space too."""
    if not 0 <= min_length <= max_length or max_length < 1:
        raise ValueError("need 0 <= min_length <= max_length and max_length >= 1")
    edge = f"[^{_NOT_AT_EDGES}]"
    # One visible character, or two with up to max_length - 2 of anything but controls between.
    inner = f"[^{_CONTROL}]{{0,{max_length - 2}}}"
    core = edge if max_length == 1 else f"{edge}(?:{inner}{edge})?"
    if min_length == 0:
        core = f"(?:{core})?"
    return f"^[{_TRIMMED}]*{core}[{_TRIMMED}]*$"


MULTI_LINE_PATTERN: Final = f"^[^{_CONTROL_BUT_BREAKS}]*$"


@dataclass(frozen=True)
class SingleLine:
    """A `str` annotation: trimmed, then `min_length` to `max_length` characters with no
    control character; its JSON schema says exactly that with a `pattern`."""

    max_length: int
    min_length: int = 0

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return handler.generate_schema(
            Annotated[
                str,
                StringConstraints(
                    strip_whitespace=True, min_length=self.min_length, max_length=self.max_length
                ),
                AfterValidator(single_line),
            ]
        )

    def __get_pydantic_json_schema__(
        self, schema: Any, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": single_line_pattern(min_length=self.min_length, max_length=self.max_length),
            # A field's own description replaces this one.
            "description": f"Trimmed, then {self.min_length} to {self.max_length} characters, "
            "none of them a control character.",
        }


@dataclass(frozen=True)
class MultiLine:
    """A `str` annotation: at most `max_length` characters, no control character other than
    tabs and line breaks (not trimmed); its JSON schema says so with a `pattern`."""

    max_length: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return handler.generate_schema(
            Annotated[
                str, StringConstraints(max_length=self.max_length), AfterValidator(multi_line)
            ]
        )

    def __get_pydantic_json_schema__(
        self, schema: Any, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "maxLength": self.max_length,
            "pattern": MULTI_LINE_PATTERN,
            "description": f"At most {self.max_length} characters; tabs and line breaks are the "
            "only control characters allowed.",
        }


__all__ = [
    "MULTI_LINE_PATTERN",
    "MultiLine",
    "SingleLine",
    "multi_line",
    "single_line",
    "single_line_pattern",
]
