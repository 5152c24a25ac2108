"""The published JSON Schemas (docs/schemas, generated from vad/records.py) as validators: what the
integration tests check every record read back from the job against (tests/integration/conftest.py),
with jsonschema, independently of the pydantic classes that generated them."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema

from vad.records import PUBLISHED

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


@functools.cache
def validator(kind: type) -> jsonschema.protocols.Validator:
    """The validator of the committed schema file of ``kind`` (Event, DeadLetter or ScoreLine)."""
    (name,) = [n for n, cls in PUBLISHED.items() if cls is kind]
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def check(kind: type, text: str | bytes) -> None:
    """Raises jsonschema.ValidationError if ``text`` is not a valid record of ``kind``."""
    validator(kind).validate(json.loads(text))
