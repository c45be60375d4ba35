"""`newsletter new` and `newsletter schema`."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema
import yaml

from .support import REPO, SEED


def test_new_writes_a_scaffold_that_passes_check(project, run):
    result = run("new", "2021-06-summer")
    assert result.exit_code == 0, result.output
    path = project / "issues" / "2021-06-summer.yaml"
    assert path.exists()
    checked = run("check", path)
    assert checked.exit_code == 0, checked.output
    assert "valid, 1 items" in checked.output
    assert run("build", path).exit_code == 0


def test_new_never_overwrites(project, run):
    path = project / "issues" / f"{SEED}.yaml"
    before = path.read_bytes()
    result = run("new", SEED)
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert path.read_bytes() == before


def test_new_refuses_a_name_that_is_not_a_slug(project, run):
    result = run("new", "../escape")
    assert result.exit_code == 1
    assert "cannot be an issue name" in result.output
    assert not (project / "escape.yaml").exists()


def _as_json(value):
    """YAML data as JSON would carry it (dates become strings)."""
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def test_schema_validates_the_seed_and_rejects_bad_issues(run):
    result = run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    seed = _as_json(yaml.safe_load((REPO / "issues" / f"{SEED}.yaml").read_text(encoding="utf-8")))
    jsonschema.validate(seed, schema)
    broken = dict(seed, titel="typo")
    del broken["items"][0]["status"]
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(broken))
    assert len(errors) == 2


def test_site_schema_validates_the_site_file(run):
    schema = json.loads(run("schema", "--site").output)
    site = yaml.safe_load((REPO / "newsletter.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(site, schema)


def test_committed_schema_files_are_current(run):
    # Editors read schema/*.json through the `$schema` comment in each file.
    assert (REPO / "schema" / "issue.schema.json").read_text(encoding="utf-8") == run("schema").output
    assert (REPO / "schema" / "site.schema.json").read_text(encoding="utf-8") == run("schema", "--site").output
