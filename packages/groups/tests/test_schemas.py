"""The input schemas say what the routes accept, so that a request the schema allows is never
refused (Schemathesis holds the running service to that)."""

import re

import pytest
from pydantic import ValidationError

from roster_groups.models import GROUP_NAME_MAX_LENGTH
from roster_groups.schemas import GroupCreate, GroupUpdate


def test_a_rename_offers_no_null_name_because_it_refuses_one() -> None:
    name = GroupUpdate.model_json_schema()["properties"]["name"]
    assert name["type"] == "string"
    assert "anyOf" not in name
    assert "default" not in name
    with pytest.raises(ValidationError, match="name cannot be null"):
        GroupUpdate.model_validate({"name": None})
    assert GroupUpdate.model_validate({}).model_fields_set == set()


@pytest.mark.parametrize("model", [GroupCreate, GroupUpdate])
@pytest.mark.parametrize(
    "name",
    ["Crew", "  Night Shift \t", "x" * GROUP_NAME_MAX_LENGTH, " " + "x" * GROUP_NAME_MAX_LENGTH],
)
def test_names_the_pattern_allows_are_accepted(
    model: type[GroupCreate | GroupUpdate], name: str
) -> None:
    pattern = model.model_json_schema()["properties"]["name"]["pattern"]
    assert re.search(pattern, name)
    assert model.model_validate({"name": name}).name == name.strip()


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * (GROUP_NAME_MAX_LENGTH + 1), "line\nbreak", "nul\x00", "del\x7f"]
)
def test_names_the_pattern_rules_out_are_refused(name: str) -> None:
    pattern = GroupCreate.model_json_schema()["properties"]["name"]["pattern"]
    assert re.search(pattern, name) is None
    with pytest.raises(ValidationError):
        GroupCreate.model_validate({"name": name})


def test_descriptions_allow_line_breaks_and_say_so() -> None:
    [text, null] = GroupCreate.model_json_schema()["properties"]["description"]["anyOf"]
    assert null == {"type": "null"}
    assert re.search(text["pattern"], "two\r\nlines\tand a tab")
    assert re.search(text["pattern"], "bell\x07") is None
