"""Templates run in Jinja's sandbox: they can shape the email, never run Python (issue 7, point 13)."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from newsletter.personalise import SlotRegistry, SubscriberFields
from newsletter.pipeline import check
from newsletter.preview import Preview
from newsletter.render import STATUS_LABELS, environment
from newsletter.share import shared_posts

from .support import SEED, run_cli

ISSUE = f"issues/{SEED}.yaml"
GREETING = 'Hi {{ subscriber.get("name", "there") }},'
# str.format reaches attributes on its own; in the sandbox it goes through the same checks.
LEAK = '{{ "{0.__init__.__globals__[os].environ[NEWSLETTER_SECRET]}".format(cycler) }}'


def _replace_greeting(project: Path, template: str, new: str) -> int:
    """Put `new` where the template greets the reader; its line number."""
    path = project / "templates" / template
    text = path.read_text(encoding="utf-8")
    assert GREETING in text
    path.write_text(text.replace(GREETING, new), encoding="utf-8")
    return text[: text.index(GREETING)].count("\n") + 1


def test_a_template_cannot_run_python_through_build(project):
    line = _replace_greeting(project, "email.txt.j2", '{{ cycler.__init__.__globals__.os.mkdir("PWNED") }}')
    done = run_cli(project, "build", ISSUE)
    assert not (project / "PWNED").exists()
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: templates/email.txt.j2:{line}: template error: "
        "access to attribute '__init__' of 'type' object is unsafe."
    ]
    assert not (project / "outbox" / SEED).exists()


@pytest.mark.parametrize(
    "attack",
    [
        '{{ lipsum.__globals__.os.mkdir("PWNED") }}',
        '{{ joiner.__init__.__globals__.os.mkdir("PWNED") }}',
        '{{ namespace.__init__.__globals__.os.mkdir("PWNED") }}',
        '{{ "".__class__.__mro__[1].__subclasses__() }}',
        '{{ "{0.__class__.__init__.__globals__}".format(issue) }}',
        "{{ self._TemplateReference__context }}",
        "{{ subscriber._registry }}",
        "{{ issue.__class__ }}",
        '{{ issue["items"].clear() }}',  # the issue is shared by both parts: read only
        '{{ status_labels.update({"new": "Old"}) }}',
        '{{ site.__init__.__globals__["__builtins__"]["open"]("PWNED", "w") }}',
        LEAK,
        '{{ (("{0.__init__.__globals__[os].environ}" | attr("format"))(cycler)) }}',
    ],
)
def test_every_way_out_of_the_template_is_one_line_naming_file_and_line(project, run, attack):
    line = _replace_greeting(project, "email.mjml.j2", attack)
    result = run("build", ISSUE)
    assert not (project / "PWNED").exists()
    assert result.exit_code == 1
    [message] = result.stderr.splitlines()
    assert message.startswith(f"error: templates/email.mjml.j2:{line}: template error: ")
    assert "unsafe" in message


def test_a_version_without_the_sandbox_sharing_the_cache_still_builds(project, run):
    # Code compiled for the sandbox calls `environment.call`, which a plain
    # environment lacks: this tool from before the sandbox, installed beside
    # this one with the same ~/.cache, must not load it.
    assert run("build", ISSUE).exit_code == 0
    checked = check(Path(ISSUE))
    templates = checked.project.templates
    cache = jinja2.FileSystemBytecodeCache(str(project / ".cache" / "newsletter" / "jinja"))
    older = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), bytecode_cache=cache)
    older.filters.update(environment(templates).filters)
    text = older.get_template("email.txt.j2").render(
        issue=checked.issue,
        site=checked.project.site,
        status_labels=STATUS_LABELS,
        subscriber=SubscriberFields(SlotRegistry()),
        unsubscribe_url="https://example.org/u",
        shares=shared_posts(checked.project.site, checked.issue, checked.rendered.identity),
    )
    assert checked.issue.title.upper() in text
    # And what the older one compiled is not used in the sandbox either.
    _replace_greeting(project, "email.txt.j2", '{{ cycler.__init__.__globals__.os.mkdir("PWNED") }}')
    older.get_template("email.txt.j2")
    assert run("build", ISSUE).exit_code == 1
    assert not (project / "PWNED").exists()


def test_an_included_template_is_named_in_the_error(project, run):
    (project / "templates" / "greeting.j2").write_text(
        'Hello,\n{{ cycler.__init__.__globals__.os.mkdir("PWNED") }}\n', encoding="utf-8"
    )
    _replace_greeting(project, "email.txt.j2", '{% include "greeting.j2" %}')
    result = run("build", ISSUE)
    assert not (project / "PWNED").exists()
    assert result.exit_code == 1
    assert result.stderr.startswith("error: templates/greeting.j2:2: template error: ")


def test_the_preview_reports_the_attack_and_does_not_run_it(project):
    preview = Preview(project / ISSUE)
    preview.rebuild()
    assert preview.snapshot.errors == []
    line = _replace_greeting(project, "email.txt.j2", '{{ cycler.__init__.__globals__.os.mkdir("PWNED") }}')
    preview.rebuild()
    assert not (project / "PWNED").exists()
    [problem] = preview.snapshot.errors
    assert str(problem).startswith(f"templates/email.txt.j2:{line}: template error: ")


def test_what_templates_legitimately_do_still_works(project, run):
    _replace_greeting(
        project,
        "email.txt.j2",
        "{% set ns = namespace(count=0) %}"
        "{% for key, label in status_labels.items() %}{% set ns.count = ns.count + 1 %}{% endfor %}"
        'Hi {{ subscriber.name }} / {{ subscriber.get("name", "there") }} / {{ subscriber["city"] }},'
        ' {{ ns.count }} labels, {{ issue["items"] | map(attribute="status") | unique | list | length }} statuses,'
        ' {{ "%s!" | format(issue.title) }} {{ "{}?".format(slug) }} {{ range(3) | sum }} {{ cycler("x").next() }}',
    )
    result = run("build", ISSUE)
    assert result.exit_code == 0, result.output
    text = (project / "outbox" / SEED / "email.txt").read_text(encoding="utf-8")
    assert f"Hi  / there / , 4 labels, 2 statuses, Crisis and Tactical Round Up: Spring Solidarity! {SEED}? 3 x" in text
