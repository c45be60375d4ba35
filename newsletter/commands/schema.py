"""`newsletter schema`: the issue format as JSON Schema, for editors.

Printed on its own, or written as `schema/issue.schema.json` and `schema/site.schema.json`
in the project, where the `# yaml-language-server: $schema=...` line of each file points.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from ..console import Console, shown_path
from ..errors import NewsletterError, Problem
from ..model import Issue, Site
from ..project import find_root

Kind = Literal["issue", "site"]
FOLDER = "schema"  # in the project, beside newsletter.yaml
FILES: dict[Kind, str] = {"issue": "issue.schema.json", "site": "site.schema.json"}
# Classes renamed in the code since the schema was first published, under the names it still uses:
# editors show them, and a schema file a project keeps should not change with a rename in here.
PUBLISHED_NAMES = {"Mailbox": "Sender"}


def schema_command(kind: Kind = "issue", *, console: Console, write: bool = False) -> None:
    """Show the JSON Schema of the issue file (or of the site file); with `write`, write both into
    the project of the current folder (or the current folder) and say where."""
    if not write:
        console.say(schema(kind).removesuffix("\n"))
        return
    for path in write_schemas(find_root(Path.cwd()) or Path.cwd()):
        console.say(f"wrote {shown_path(path)}")


def schema(kind: Kind = "issue") -> str:
    model = Issue if kind == "issue" else Site
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(by_alias=True, schema_generator=_PublishedNames),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def schema_path(root: Path, kind: Kind) -> Path:
    """Where the project at `root` keeps the schema of `kind`."""
    return root / FOLDER / FILES[kind]


def write_schemas(root: Path, *, missing_only: bool = False) -> list[Path]:
    """Write both schemas into the project at `root` (with `missing_only`, those not there); the paths written.

    Raises NewsletterError naming the file that cannot be written.
    """
    from .build import write_atomically

    written = []
    for kind in FILES:
        path = schema_path(root, kind)
        if missing_only and path.exists():
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NewsletterError(Problem(path, "cannot write: a file stands where its folder should be")) from None
        except OSError as exc:
            raise NewsletterError(Problem(path, f"cannot write: {exc.strerror}")) from None
        written.append(write_atomically(path, schema(kind).encode("utf-8")))
    return written


class _PublishedNames(GenerateJsonSchema):
    def normalize_name(self, name: str) -> str:
        return super().normalize_name(PUBLISHED_NAMES.get(name, name))

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        found: dict[str, Any] = super().model_schema(schema)
        name = schema["cls"].__name__
        if found.get("title") == name and name in PUBLISHED_NAMES:
            found["title"] = PUBLISHED_NAMES[name]
        return found
