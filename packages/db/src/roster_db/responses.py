"""A JSON response for rows read straight from the database."""

from typing import Any

from fastapi import Response
from pydantic_core import to_json


class RowsJSONResponse(Response):
    """JSON written by pydantic-core, as FastAPI writes a response model (UUIDs and datetimes
    as pydantic writes them, enums by value), but from plain values: a page of rows keyed by
    the response schema's field names needs no model per row, nor FastAPI's second validation
    of the returned models against `response_model`."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return to_json(content)


__all__ = ["RowsJSONResponse"]
