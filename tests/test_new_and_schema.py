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


def _schema_line_target(issue) -> tuple[str, object]:
    """The file the scaffold's `# yaml-language-server: $schema=...` line points to, as an editor finds it."""
    first = issue.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    reference = first.removeprefix(prefix)
    return reference, issue.parent / reference  # relative to the file, as the YAML language server reads it


def test_the_scaffold_s_schema_line_resolves_in_a_project_of_its_own(project, run):
    assert not (project / "schema").exists()  # a user's project, not this repository
    result = run("new", "2021-06-summer")
    assert result.exit_code == 0, result.output
    issue = project / "issues" / "2021-06-summer.yaml"
    reference, target = _schema_line_target(issue)
    assert not reference.startswith("/")  # the project can move
    assert target.read_text(encoding="utf-8") == run("schema").output
    scaffold = _as_json(yaml.safe_load(issue.read_text(encoding="utf-8")))
    jsonschema.validate(scaffold, json.loads(target.read_text(encoding="utf-8")))
    site_schema = json.loads((project / "schema" / "site.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(yaml.safe_load((project / "newsletter.yaml").read_text(encoding="utf-8")), site_schema)
    assert "wrote schema/issue.schema.json" in result.output


def test_new_leaves_the_project_s_schema_files_alone(project, run):
    (project / "schema").mkdir()
    (project / "schema" / "issue.schema.json").write_text("{}\n", encoding="utf-8")
    result = run("new", "2021-06-summer")
    assert result.exit_code == 0, result.output
    assert (project / "schema" / "issue.schema.json").read_text(encoding="utf-8") == "{}\n"
    assert (project / "schema" / "site.schema.json").read_text(encoding="utf-8") == run("schema", "--site").output
    assert "issue.schema.json" not in result.output


def test_new_writes_the_issue_even_when_the_schema_cannot_be(project, run):
    (project / "schema").write_text("a file where the folder should be\n", encoding="utf-8")
    result = run("new", "2021-06-summer")
    assert result.exit_code == 0, result.output
    assert (project / "issues" / "2021-06-summer.yaml").exists()
    assert "warning: schema/issue.schema.json: cannot write" in result.output
    assert "newsletter schema --write" in result.output


def test_schema_write_refreshes_both_files_in_the_project_from_any_folder_in_it(project, run, monkeypatch):
    (project / "schema").mkdir()
    (project / "schema" / "issue.schema.json").write_text("{}\n", encoding="utf-8")  # from an older version
    monkeypatch.chdir(project / "issues")
    result = run("schema", "--write")
    assert result.exit_code == 0, result.output
    assert (project / "schema" / "issue.schema.json").read_text(encoding="utf-8") == run("schema").output
    assert (project / "schema" / "site.schema.json").read_text(encoding="utf-8") == run("schema", "--site").output
    assert not (project / "issues" / "schema").exists()
    # And the seed issue's own line now resolves in this copy of the project.
    _, target = _schema_line_target(project / "issues" / f"{SEED}.yaml")
    assert target.read_text(encoding="utf-8") == run("schema").output


def test_schema_write_with_site_is_a_usage_error(project, run):
    result = run("schema", "--write", "--site")
    assert result.exit_code == 2
    assert not (project / "schema").exists()
