"""`newsletter schema`: the issue format as JSON Schema, for editors."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from ..console import Console
from ..model import Issue, Site

# Classes renamed in the code since the schema was first published, under the names it still uses:
# editors show them, and a schema file a project keeps should not change with a rename in here.
PUBLISHED_NAMES = {"Mailbox": "Sender"}


def schema_command(kind: Literal["issue", "site"] = "issue", *, console: Console) -> str:
    """Show the JSON Schema of the issue file (or of the site file); returns it."""
    document = schema(kind)
    console.say(document.removesuffix("\n"))
    return document


def schema(kind: Literal["issue", "site"] = "issue") -> str:
    model = Issue if kind == "issue" else Site
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(by_alias=True, schema_generator=_PublishedNames),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


class _PublishedNames(GenerateJsonSchema):
    def normalize_name(self, name: str) -> str:
        return super().normalize_name(PUBLISHED_NAMES.get(name, name))

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        found: dict[str, Any] = super().model_schema(schema)
        name = schema["cls"].__name__
        if found.get("title") == name and name in PUBLISHED_NAMES:
            found["title"] = PUBLISHED_NAMES[name]
        return found
