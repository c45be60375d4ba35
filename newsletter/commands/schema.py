"""`newsletter schema`: the issue format as JSON Schema, for editors."""

from __future__ import annotations

import json
from typing import Literal

from ..model import Issue, Site


def schema(kind: Literal["issue", "site"] = "issue") -> str:
    model = Issue if kind == "issue" else Site
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(by_alias=True),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
