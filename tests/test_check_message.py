"""`check`'s warnings about the built message: what spam filters score and what the law asks, each with where to
change it."""

from __future__ import annotations

import email
import email.policy
import subprocess
from pathlib import Path

import pytest

from newsletter.html_scan import colour, low_contrast, scan
from newsletter.message_lint import header_problems

from .support import MINIMAL, SEED, reply_on_the_from_domain, write_issue

QUIET = MINIMAL.replace('title: "A roundup"', 'title: "A roundup"\npreheader: "What to do this month"')
SPAMASSASSIN = "/usr/bin/spamassassin"


def _warnings(result) -> list[str]:
    return [line.removeprefix("warning: ") for line in result.output.splitlines() if line.startswith("warning: ")]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- reply_to ------------------------------------------------------------------


def test_a_reply_to_on_another_domain_than_from_is_named_by_its_line(project, run):
    issue = write_issue(project, QUIET)
    assert _warnings(run("check", issue)) == [
        "newsletter.yaml:8:11: reply_to: reply_to hhomes@amnesty.ca is on another domain than from "
        "(roundup@example.org): rspamd adds 6 points (SPOOF_REPLYTO), half-way to spam, to every copy sent to an "
        "address at example.org; reply to an address at example.org, or send from amnesty.ca"
    ]
    # rspamd compares the domains as written: a sub-domain is another domain.
    _edit(project / "newsletter.yaml", "reply_to: hhomes@amnesty.ca", "reply_to: hhomes@news.example.org")
    assert "another domain" in " ".join(_warnings(run("check", issue)))
    _edit(project / "newsletter.yaml", "hhomes@news.example.org", "Replies@EXAMPLE.org")
    assert _warnings(run("check", issue)) == []


def test_unsubscribes_mailed_to_the_reply_address_are_warned_of(project, run):
    issue = write_issue(project, QUIET)
    _edit(project / "newsletter.yaml", "reply_to: hhomes@amnesty.ca", "reply_to: Unsubscribe@example.org")
    (warning,) = _warnings(run("check", issue))
    assert warning.startswith("newsletter.yaml:") and "unsubscribe_mailto is reply_to" in warning


# -- the hidden preheader ----------------------------------------------------------


def _spamassassin_rules(eml: Path, home: Path) -> str:
    """The rules SpamAssassin's local tests (no network) find in `eml`, as its report lists them."""
    if not Path(SPAMASSASSIN).exists():
        pytest.fail(
            "this test runs Debian's SpamAssassin; install it with: apt-get install -y spamassassin (as .ci/run does)",
            pytrace=False,
        )
    done = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"],
        input=eml.read_bytes(),
        capture_output=True,
        timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    report = done.stdout.decode("utf-8", "replace")
    assert "Content analysis details" in report, done.stderr
    return report.split("Content analysis details", 1)[1]


def test_the_preheader_is_hidden_in_a_colour_spam_filters_do_not_call_hidden(project, run, tmp_path):
    assert run("build", f"issues/{SEED}.yaml").exit_code == 0
    outbox = project / "outbox" / SEED
    html = (outbox / "email.html").read_text(encoding="utf-8")
    preheader = "Stand with Belarus, show solidarity with Myanmar"
    assert preheader in html and scan(html).low_contrast == []
    # Hidden still, as mail clients hide it: no space in the page, nor in Outlook.
    hidden = html[html.rindex("<div", 0, html.index(preheader)) : html.index(preheader)]
    assert all(rule in hidden for rule in ("display:none", "mso-hide:all", "max-height:0", "opacity:0"))
    assert "HTML_FONT_LOW_CONTRAST" not in _spamassassin_rules(outbox / "email.eml", tmp_path)


def test_a_template_that_writes_the_preheader_white_again_is_warned_of_as_spamassassin_scores_it(
    project, run, tmp_path
):
    reply_on_the_from_domain(project)
    # What the template did before: MJML's own preview text, white on what spam filters take for white.
    template = project / "templates" / "email.mjml.j2"
    _edit(template, "<mj-title>", "<mj-preview>{{ issue.preheader }}</mj-preview>\n<mj-title>")
    _edit(template, "{% if issue.preheader %}\n{#-", "{% if false %}\n{#-")
    issue = f"issues/{SEED}.yaml"
    assert [w for w in _warnings(run("check", issue)) if "placeholder" not in w] == [
        "templates/email.mjml.j2: the hidden preheader is coloured #ffffff on #ffffff as spam filters read the HTML "
        "(SpamAssassin's HTML_FONT_LOW_CONTRAST, hidden or not): give it the colour of the body text"
    ]
    assert run("build", issue).exit_code == 0
    assert "HTML_FONT_LOW_CONTRAST" in _spamassassin_rules(project / "outbox" / SEED / "email.eml", tmp_path)


@pytest.mark.parametrize(
    ("html", "flagged"),
    [
        ('<div style="color:#ffffff">white on the white SpamAssassin assumes</div>', True),
        ('<body style="background-color:#1a1a1a"><div style="color:#fff">body style is not read</div>', True),
        ('<table style="background:url(x.png) #1a1a1a"><tr><td style="color:white">on dark</td></tr></table>', False),
        ('<div style="background-color:#f2f2f2"><p style="color:#f5f5f5">nearly the same</p></div>', True),
        ('<div style="background-color:#f2f2f2"><p style="color:#1a1a1a">body text</p></div>', False),
        ('<div style="color:rgb(250, 250, 250)">rgb, nearly white</div>', True),
        ('<div style="color:#fff"><span style="color:#000">a span of its own</span></div>', False),
        ('<div style="color:#fff"><p>x</p></div><p>after the div: black again</p>', True),
        ('<font color="#fefefe">font colour</font>', True),
    ],
)
def test_low_contrast_text_is_found_as_spamassassin_finds_it(html, flagged):
    found = scan(html).low_contrast
    assert bool(found) is flagged
    assert not any("black again" in text.text for text in found)


def test_colours_are_read_as_spamassassin_reads_them():
    assert [colour(c) for c in ("#FFF", "white", "rgb(255, 0, 10)", "#1a1a1a80", "ffffff", "bogus")] == [
        "#ffffff",
        "#ffffff",
        "#ff000a",
        "#1a1a1a",
        None,
        None,
    ]
    assert low_contrast("#f2f2f2", "#ffffff") and not low_contrast("#1a1a1a", "#f2f2f2")


# -- headers ---------------------------------------------------------------------


def _message(*headers: str) -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\nbody\r\n").encode("utf-8")


def test_header_lines_are_held_to_rfc_5322_and_2047():
    token = "t" * 120
    assert header_problems(
        _message(
            "Subject: " + "word " * 20,  # could have been folded
            f"List-Unsubscribe: <https://example.org/unsubscribe?t={token}>,",  # one piece that cannot be
            " <mailto:unsubscribe@example.org>",
            "From: =?utf-8?q?" + "a" * 70 + "?= <roundup@example.org>",
            "To: Zoë <zoe@example.org>",
            "X-Long: " + "x" * 1000,
        )
    ) == [
        ("Subject", "has a line of 109 characters where it could be folded at 78"),
        ("From", "has an encoded-word of 82 characters; at most 75"),
        ("To", "has characters that are not ASCII: they must be written as encoded-words"),
        ("X-Long", "has a line of 1008 characters, and mail allows 998"),
    ]


def test_the_built_headers_are_folded_with_long_and_non_ascii_names(project, run):
    reply_on_the_from_domain(project)
    _edit(
        project / "newsletter.yaml",
        "name: Amnesty Crisis and Tactical Team",
        'name: "Équipe de crise et d’intervention tactique d’Amnistie internationale, section canadienne francophone"',
    )
    _edit(
        project / "newsletter.yaml",
        "organisation: Amnesty International Canada (English-speaking section)",
        "organisation: Amnistie internationale Canada francophone — Équipe de crise et d’intervention tactique",
    )
    text = QUIET.replace('title: "A roundup"', 'title: "' + "Une très longue ligne d’objet, " * 5 + '"')
    issue = write_issue(project, text)
    assert _warnings(run("check", issue)) == []
    assert run("build", issue).exit_code == 0
    raw = (project / "outbox" / "test" / "email.eml").read_bytes()
    assert header_problems(raw) == []
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["From"].addresses[0].display_name.startswith("Équipe de crise")


def test_a_header_folded_too_late_is_warned_of(project, run, monkeypatch):
    # As if message.py's folding broke: it now folds at 200, and check still holds it to 78.
    monkeypatch.setattr("newsletter.message.FOLD_AT", 200)
    reply_on_the_from_domain(project)
    issue = write_issue(project, QUIET.replace('title: "A roundup"', 'title: "' + "A long subject line " * 5 + '"'))
    assert _warnings(run("check", issue)) == [
        "issues/test.yaml:1:8: title: the message's Subject header has a line of 121 characters "
        "where it could be folded at 78",
        "the message's To header has a line of 89 characters where it could be folded at 78",  # the subscriber's name
        "newsletter.yaml:4:15: organisation: the message's List-Id header has a line of 88 characters "
        "where it could be folded at 78",
    ]


# -- images ----------------------------------------------------------------------


def test_images_without_alt_or_width_or_over_http_are_named_where_they_are_written(project, run):
    reply_on_the_from_domain(project)
    template = project / "templates" / "email.mjml.j2"
    _edit(
        template,
        '<mj-section padding="24px 0" css-class="footer">',
        '<mj-section><mj-column><mj-raw><img src="http://cdn.amnesty.ca/banner.png"></mj-raw></mj-column>'
        '</mj-section>\n<mj-section padding="24px 0" css-class="footer">',
    )
    line = (
        template.read_text(encoding="utf-8")
        .splitlines()
        .index(next(x for x in template.read_text(encoding="utf-8").splitlines() if "banner.png" in x))
    )
    text = QUIET.replace(
        '    body: "Something is happening."',
        '    image: {src: "http://cdn.amnesty.ca/flower.jpg", alt: "A flower", width: 300}\n'
        '    body: "Something is happening."',
    )
    issue = write_issue(project, text)
    assert _warnings(run("check", issue)) == [
        "issues/test.yaml:7:18: items[0].image.src: image http://cdn.amnesty.ca/flower.jpg is loaded over plain "
        "http: mail clients block it or mark the message as not secure; use https",
        f"templates/email.mjml.j2:{line + 1}: image http://cdn.amnesty.ca/banner.png has no alt text: whoever "
        "cannot see it, or whose mail client blocks images, is told nothing",
        f"templates/email.mjml.j2:{line + 1}: image http://cdn.amnesty.ca/banner.png has no width: Outlook shows "
        "an image at the size of its file, which can be wider than the email",
        f"templates/email.mjml.j2:{line + 1}: image http://cdn.amnesty.ca/banner.png is loaded over plain http: "
        "mail clients block it or mark the message as not secure; use https",
    ]
    # The same picture over https, as an item's image (MJML gives it a width): nothing to say.
    _edit(issue, "http://cdn", "https://cdn")
    _edit(
        template,
        '<mj-section><mj-column><mj-raw><img src="http://cdn.amnesty.ca/banner.png"></mj-raw>',
        "<mj-section><mj-column>",
    )
    assert _warnings(run("check", issue)) == []


# -- the footer: postal address and unsubscribe link ---------------------------------------


def test_a_template_without_the_footer_is_told_what_the_law_wants(project, run):
    reply_on_the_from_domain(project)
    html = project / "templates" / "email.mjml.j2"
    text = project / "templates" / "email.txt.j2"
    source = html.read_text(encoding="utf-8")
    start = source.index('<mj-section padding="24px 0" css-class="footer">')
    html.write_text(source[:start] + source[source.index("</mj-section>", start) + len("</mj-section>") :])
    source = text.read_text(encoding="utf-8")
    text.write_text(source[: source.index("{{ site.organisation }}\n{{ site.postal_lines")])
    issue = write_issue(project, QUIET)
    assert _warnings(run("check", issue)) == [
        "templates/email.mjml.j2: the HTML part does not show the postal address (no '312 Laurier Avenue East'): "
        "CASL and CAN-SPAM want it in every message",
        "templates/email.mjml.j2: the HTML part has no unsubscribe link ({{ unsubscribe_url }}): "
        "CASL and CAN-SPAM want one in every message",
        "templates/email.txt.j2: the plain-text part does not show the postal address (no '312 Laurier Avenue East'): "
        "CASL and CAN-SPAM want it in every message",
        "templates/email.txt.j2: the plain-text part has no unsubscribe link ({{ unsubscribe_url }}): "
        "CASL and CAN-SPAM want one in every message",
    ]


def test_the_postal_address_ends_without_a_dangling_comma(project, run):
    reply_on_the_from_domain(project)
    # Lines that end in commas of their own are joined with one comma each, too.
    _edit(project / "newsletter.yaml", "  312 Laurier Avenue East\n", "  312 Laurier Avenue East,\n")
    issue = write_issue(project, QUIET)
    assert _warnings(run("check", issue)) == []
    assert run("build", issue).exit_code == 0
    html = (project / "outbox" / "test" / "email.html").read_text(encoding="utf-8")
    assert "312 Laurier Avenue East, Ottawa, Ontario K1N 1H9, Canada</p>" in html
    text = (project / "outbox" / "test" / "email.txt").read_text(encoding="utf-8")
    assert "\n312 Laurier Avenue East\nOttawa, Ontario K1N 1H9\nCanada\n" in text
    # A project's template that still joins the lines itself is told.
    _edit(
        project / "templates" / "email.mjml.j2",
        '{{ site.postal_lines | join(", ") }}',
        '{{ site.postal_address | replace("\\n", ", ") }}',
    )
    assert _warnings(run("check", issue)) == [
        "templates/email.mjml.j2: the HTML part ends the postal address with a comma; join site.postal_lines instead"
    ]
