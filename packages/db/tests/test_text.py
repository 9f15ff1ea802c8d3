"""Free-text types: what they accept, and that their published `pattern` says exactly that (a
client that follows the schema is never refused, and what the schema rules out is refused)."""

import re
from collections.abc import Iterator
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from roster_db.text import MULTI_LINE_PATTERN, MultiLine, SingleLine, single_line_pattern

# Every character of the Basic Multilingual Plane up to CJK (all of C0, C1, and Unicode's
# white space), plus a few beyond.
CHARACTERS = [chr(code) for code in range(0x3100)] + [
    "\ufeff",
    "\ufffd",
    "\U0001f600",
    "\U0010ffff",
]


def samples(max_length: int) -> Iterator[str]:
    for char in CHARACTERS:
        yield char
        yield f"{char}ab"
        yield f"a{char}b"
        yield f"ab{char}"
        yield char * 2
    for padding in ("", " ", "\t\n", "\u3000 "):
        for length in (0, 1, max_length - 1, max_length, max_length + 1):
            yield padding + "x" * length + padding[::-1]
            yield padding + "x y" * length + padding


def accepted(adapter: TypeAdapter[str], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def published_pattern(adapter: TypeAdapter[str]) -> str:
    pattern = adapter.json_schema()["pattern"]
    assert isinstance(pattern, str)
    return pattern


@pytest.mark.parametrize(("min_length", "max_length"), [(1, 5), (0, 5), (0, 1), (1, 2)])
def test_single_line_pattern_matches_exactly_what_it_accepts(
    min_length: int, max_length: int
) -> None:
    adapter = TypeAdapter(Annotated[str, SingleLine(min_length=min_length, max_length=max_length)])
    pattern = re.compile(published_pattern(adapter))
    disagreements = [
        value
        for value in samples(max_length)
        if accepted(adapter, value) != (pattern.search(value) is not None)
    ]
    assert disagreements == []


def test_multi_line_pattern_matches_exactly_what_it_accepts() -> None:
    adapter = TypeAdapter(Annotated[str, MultiLine(max_length=5)])
    schema = adapter.json_schema()
    assert schema["pattern"] == MULTI_LINE_PATTERN
    pattern = re.compile(MULTI_LINE_PATTERN)
    disagreements = [
        value
        for value in samples(5)
        if accepted(adapter, value)
        != (pattern.search(value) is not None and len(value) <= schema["maxLength"])
    ]
    assert disagreements == []


def test_single_line_trims_and_refuses_control_characters() -> None:
    adapter = TypeAdapter(Annotated[str, SingleLine(min_length=1, max_length=5)])
    assert adapter.validate_python("  Crew\t") == "Crew"
    for value in ["", "   ", "nul\x00", "line\nbreak", "abcdef", "bell\x07", "c1\x85x"]:
        with pytest.raises(ValidationError):
            adapter.validate_python(value)
    with pytest.raises(ValidationError, match="must not contain control characters"):
        adapter.validate_python("a\x00b")


def test_multi_line_keeps_tabs_and_line_breaks_and_refuses_other_controls() -> None:
    adapter = TypeAdapter(Annotated[str, MultiLine(max_length=20)])
    assert adapter.validate_python(" two\r\nlines\t ") == " two\r\nlines\t "
    with pytest.raises(ValidationError, match="other than tabs and line breaks"):
        adapter.validate_python("nul\x00")


def test_a_fields_own_description_wins_and_nullable_fields_keep_the_pattern() -> None:
    class Model(BaseModel):
        name: Annotated[str, SingleLine(max_length=10)] = Field(description="The name.")
        nick: Annotated[str, SingleLine(max_length=10)] | None = None

    properties = Model.model_json_schema()["properties"]
    assert properties["name"]["description"] == "The name."
    assert properties["name"]["pattern"] == single_line_pattern(min_length=0, max_length=10)
    [string, null] = properties["nick"]["anyOf"]
    assert string["pattern"] == single_line_pattern(min_length=0, max_length=10)
    assert null == {"type": "null"}
    assert "maxLength" not in string  # trimmed white space would count against it


def test_impossible_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="min_length"):
        single_line_pattern(min_length=3, max_length=2)
