"""`newsletter build`: the seed issue becomes a complete, readable email."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import lxml.html
import yaml

from .support import MINIMAL, SEED, run_cli, write_issue


def _parts(eml: Path) -> tuple[email.message.EmailMessage, str, str]:
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return message, text, html


def _words(s: str) -> str:
    return " ".join(s.split())


def _markdown_as_text(step: str) -> str:
    """How the text part writes a Markdown step: links as 'label (url)'."""
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", step)


def _markdown_as_html_text(step: str) -> str:
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1", step)


def _visible_text(html: str) -> str:
    """The text a reader sees in the HTML body."""
    return _words(lxml.html.fromstring(html).body.text_content())


def test_seed_issue_builds_three_files_and_prints_their_sizes(project, run):
    result = run("build", f"issues/{SEED}.yaml")
    assert result.exit_code == 0, result.output
    out = project / "outbox" / SEED
    for name in ("email.html", "email.txt", "email.eml"):
        assert (out / name).stat().st_size > 1000
        assert re.search(rf"outbox/{SEED}/{name}\s+\d+\.\d KB", result.output)


def test_eml_is_a_complete_multipart_alternative_message(project, run):
    write_issue(project, 'subject: "A subject of our own"\n' + MINIMAL)
    run("build", "issues/test.yaml")
    message, text, html = _parts(project / "outbox" / "test" / "email.eml")
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert message[header], header
    assert message["Subject"] == "A subject of our own"
    assert message["To"] == "subscriber@example.org"
    assert "roundup@example.org" in message["From"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert html.startswith("<!doctype html>")
    raw = (project / "outbox" / "test" / "email.eml").read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF lines, as SMTP wants
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # quoted-printable's limit
    # The files beside it are the same parts.
    assert (project / "outbox" / "test" / "email.txt").read_text(encoding="utf-8") == text.replace("\r\n", "\n")


# An issue of the tests' own, so that what is counted does not change when the sample issue is edited.
ROUNDUP = """
title: "Three actions this month"
date: 2021-06-07
preheader: "Write, share and sign"
items:
  - status: new
    title: "Write a solidarity message"
    body: |
      First paragraph about the action.

      Second paragraph with [a report](https://www.amnesty.ca/report).
    actions:
      - "Take or create a picture of a flower."
      - "Sign the [online petition](https://www.amnesty.ca/petition) today."
      - "Use hashtag #StandWithBelarus."
    sample_posts:
      - "In solidarity with the people of Belarus #StandWithBelarus"
      - "Flowers for everyone who stands up for rights"
    links:
      - {text: "Read more", url: "https://www.amnesty.ca/belarus"}
  - status: ongoing
    title: "Share the campaign"
    actions:
      - "Share the **campaign video**."
      - "Tag @AmnestyNow."
  - status: update
    title: "Good news"
    body: "The petition was delivered."
    sample_posts:
      - "Thank you to everyone who signed"
contact: {name: "Hilary Homes", role: "Crisis and Tactical Advisor", email: hhomes@amnesty.ca}
"""


def _build_roundup(project, run) -> tuple[dict, str, str]:
    """(the issue as data, the text part, the HTML part) of ROUNDUP built as a user builds it."""
    result = run("build", write_issue(project, ROUNDUP))
    assert result.exit_code == 0, result.output
    _, text, html = _parts(project / "outbox" / "test" / "email.eml")
    return yaml.safe_load(ROUNDUP), text.replace("\r\n", "\n"), html


def test_every_action_step_is_in_both_parts(project, run):
    roundup, text, html = _build_roundup(project, run)
    steps = [step for item in roundup["items"] for step in item.get("actions", [])]
    seen_html, seen_text = _visible_text(html), _words(text)
    for step in steps:
        assert _words(_markdown_as_html_text(step).replace("**", "")) in seen_html, step
        assert _words(_markdown_as_text(step).replace("**", "*")) in seen_text, step
    # Numbered afresh in each item, in both parts.
    assert re.findall(r"^(\d+)\. ", text, re.M) == ["1", "2", "3", "1", "2"]
    assert [len(ol.findall("li")) for ol in lxml.html.fromstring(html).iter("ol")] == [3, 2]


def test_plain_text_reads_on_its_own(project, run):
    _, text, _ = _build_roundup(project, run)
    assert text.splitlines()[:2] == ["THREE ACTIONS THIS MONTH", "7 June 2021"]
    assert "New: Write a solidarity message" in text and "Ongoing: Share the campaign" in text
    assert text.count("WHAT YOU CAN DO") == 2
    assert re.search(r"^1\. Take or create a picture of a flower\.$", text, re.M)
    assert re.search(r"^3\. Use hashtag #StandWithBelarus\.$", text, re.M)
    # Links are written out, never hidden behind their label.
    assert "online petition (https://www.amnesty.ca/petition)" in _words(text)
    assert "a report (https://www.amnesty.ca/report)" in _words(text)
    assert re.search(r"^\* Read more\n  https://www\.amnesty\.ca/belarus$", text, re.M)
    assert "For more information: contact Hilary Homes, Crisis and Tactical Advisor (hhomes@amnesty.ca)" in _words(text)
    assert re.search(r"^Unsubscribe: https://example\.org/unsubscribe\?t=\S+$", text, re.M)
    assert max(len(line) for line in text.splitlines() if "https://" not in line) <= 78
    assert "<" not in text  # no markup in the text part


def test_all_content_is_in_the_html(project, run):
    roundup, _, html = _build_roundup(project, run)
    seen = _visible_text(html)
    assert [_words(h.text_content()) for h in lxml.html.fromstring(html).iter("h2")] == [
        "Write a solidarity message",
        "Share the campaign",
        "Good news",
    ]
    for item in roundup["items"]:
        for paragraph in item.get("body", "").split("\n\n"):
            assert _words(_markdown_as_html_text(paragraph)) in seen
        for link in item.get("links", []):
            assert _words(link["text"]) in seen
            assert f'href="{link["url"]}"' in html
    posts = [_words(p.text_content()) for p in lxml.html.fromstring(html).find_class("post")]
    assert posts == [_words(post) for item in roundup["items"] for post in item.get("sample_posts", [])]
    assert len(posts) == 3


def test_html_is_accessible_and_responsive(project, run):
    items = "".join(f"  - status: {status}\n    title: An action\n" for status in ("new", "ongoing"))
    write_issue(project, f'title: A roundup\ndate: 2021-05-03\npreheader: "Our own preheader"\nitems:\n{items}')
    run("build", "issues/test.yaml")
    html = (project / "outbox" / "test" / "email.html").read_text(encoding="utf-8")
    assert re.search(r'<html[^>]* lang="en"[^>]* dir="ltr"', html)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    tables = re.findall(r"<table\b[^>]*>", html)
    assert tables and all('role="presentation"' in t for t in tables)
    assert "@media only screen and (max-width: 480px)" in html  # kept by premailer
    assert "<!--[if mso | IE]>" in html  # Outlook's conditional blocks intact
    assert "Our own preheader" in html
    for label in ("New", "Ongoing"):
        assert re.search(rf'<span class="badge badge-{label.lower()}"[^>]*>{label}</span>', html)
    assert re.search(r"<img\b", html) is None or all('alt="' in img for img in re.findall(r"<img\b[^>]*>", html))
    assert "fonts.googleapis.com" not in html
    assert len(html.encode()) < 102 * 1024  # Gmail clips larger messages


def test_footer_has_organisation_address_contact_and_unsubscribe(project, run):
    run("build", f"issues/{SEED}.yaml")
    html = (project / "outbox" / SEED / "email.html").read_text(encoding="utf-8")
    seen = _visible_text(html)
    assert "Amnesty International Canada" in seen
    assert "312 Laurier Avenue East" in seen
    assert 'href="mailto:hhomes@amnesty.ca"' in html
    link = re.search(r'<a href="(https://example\.org/unsubscribe\?t=[^"]+)"[^>]*>Unsubscribe</a>', html)
    assert link, "no unsubscribe link"


def test_right_to_left_language_sets_dir(project, run):
    path = write_issue(project, MINIMAL.replace("date: 2021-05-03", "date: 2021-05-03\nlang: ar"))
    assert run("build", path).exit_code == 0
    html = (project / "outbox" / "test" / "email.html").read_text(encoding="utf-8")
    assert re.search(r'<html[^>]* lang="ar"[^>]* dir="rtl"', html)


def test_out_option_writes_elsewhere(project, run, tmp_path):
    target = tmp_path / "elsewhere"
    assert run("build", f"issues/{SEED}.yaml", "--out", target).exit_code == 0
    assert sorted(p.name for p in target.iterdir()) == ["email.eml", "email.html", "email.txt"]


def test_build_from_another_folder_finds_the_project(project, run, monkeypatch):
    monkeypatch.chdir(project.parent)
    result = run("build", project / "issues" / f"{SEED}.yaml")
    assert result.exit_code == 0, result.output
    assert (project / "outbox" / SEED / "email.eml").exists()


def test_python_dash_m_works(project):
    write_issue(project, MINIMAL)
    done = run_cli(project, "check", "issues/test.yaml")
    assert done.returncode == 0, done.stderr
    assert "issues/test.yaml: valid, 1 items" in done.stdout


def test_check_warns_before_gmail_clips_the_html(project, run):
    paragraph = "Words of the campaign, repeated to make a long issue. " * 20
    body = "\n\n".join([paragraph] * 74)
    text = MINIMAL.replace(
        'body: "Something is happening."', "body: |\n" + "\n".join("      " + line for line in body.splitlines())
    )
    path = write_issue(project, text)
    result = run("check", path)
    assert result.exit_code == 0, result.output
    assert re.search(
        r"warning: issues/test\.yaml: the HTML is 9\d KB, close to Gmail's 102 KB clipping limit", result.output
    )
    assert run("check", "--strict", path).exit_code == 1

    path = write_issue(
        project,
        text.replace(
            "    actions:",
            "    notes: |\n" + "\n".join("      " + line for line in body.splitlines()) + "\n    actions:",
        ),
    )
    result = run("check", path)
    assert "Gmail clips messages over 102 KB" in result.output


def test_a_template_mistake_names_the_template_and_line(project, run):
    template = project / "templates" / "email.txt.j2"
    lines = template.read_text(encoding="utf-8").splitlines()
    lines.insert(5, "{{ issue.no_such_field }}")
    lines.insert(6, "{{ issue.title | wrap('not a number') }}")
    template.write_text("\n".join(lines), encoding="utf-8")
    result = run("build", f"issues/{SEED}.yaml")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert re.search(r"templates/email\.txt\.j2:6: template error: .*no_such_field", result.output)
    lines.pop(5)
    template.write_text("\n".join(lines), encoding="utf-8")
    result = run("build", f"issues/{SEED}.yaml")
    assert result.exit_code == 1
    assert re.search(r"templates/email\.txt\.j2:6: template error: ", result.output), result.output


def test_an_issue_file_name_with_accents_and_spaces_builds_a_valid_message(project, run):
    path = project / "issues" / "été 2021.yaml"
    seed = (project / "issues" / f"{SEED}.yaml").read_text(encoding="utf-8")
    path.write_text(re.sub(r"(?m)^id: .*\n", "", seed), encoding="utf-8")  # known by its file name
    result = run("build", path)
    assert result.exit_code == 0, result.output
    raw = (project / "outbox" / "été 2021" / "email.eml").read_bytes()
    assert raw.isascii()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert re.fullmatch(r"<t-2021\.[0-9a-f]{32}@example\.org>", message["Message-ID"])


def test_built_files_are_readable_by_others_like_any_new_file(project, run):
    run("build", f"issues/{SEED}.yaml")
    mode = (project / "outbox" / SEED / "email.html").stat().st_mode & 0o777
    assert mode == 0o666 & ~_current_umask()


def _current_umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_any_runtime_mistake_in_a_template_is_a_message(project, run):
    template = project / "templates" / "email.mjml.j2"
    template.write_text(template.read_text(encoding="utf-8").replace("<mj-body", "{{ 1 // 0 }}<mj-body", 1), "utf-8")
    result = run("build", f"issues/{SEED}.yaml")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert re.search(r"templates/email\.mjml\.j2:\d+: template error: .*division", result.output), result.output
