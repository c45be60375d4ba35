"""`check --links` against a real HTTP server on 127.0.0.1: dead links are errors at their lines, redirects and
heavy images warnings, and the server is asked politely, a few requests at a time."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from newsletter.link_check import AT_ONCE, USER_AGENT, redirect_refusal

from .support import SEED, reply_on_the_from_domain, write_issue

TIMEOUT = "0.5"  # seconds: /slow answers far later


def _issue(server: str, refused: str) -> str:
    return textwrap.dedent(f"""
        title: "A roundup"
        date: 2021-05-03
        preheader: "What to do"
        items:
          - status: new
            title: "An action"
            image: {{src: "{server}/heavy.png", alt: "A heavy picture", width: 300}}
            body: |
              Read [the report]({server}/live) and [the old one]({server}/moved).

              Also [this]({server}/gone) and [write to us](mailto:team@amnesty.ca).
            actions:
              - "Sign [the petition]({server}/no-head)."
              - "Share [the page]({server}/drops-head)."
            links:
              - {{text: "Broken", url: "{server}/broken"}}
              - {{text: "Loop", url: "{server}/loop-a"}}
              - {{text: "Slow", url: "{server}/slow"}}
              - {{text: "Refused", url: "{refused}/"}}
              - {{text: "Moved and gone", url: "{server}/moved-to-gone"}}
              - {{text: "Gone again", url: "{server}/gone"}}
              - {{text: "No such port", url: "http://127.0.0.1:99999/"}}
        """)


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def _at(path: Path, value: str, field: str, *, column: bool = True) -> str:
    """`FILE:LINE[:COL]: field` of the first line holding `value`, the column where it starts (its quote)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    n, line = next((n, line) for n, line in enumerate(lines, 1) if value in line)
    where = f"{n}:{line.index(value) + 1}" if column else f"{n}"
    return f"issues/{path.name}:{where}: {field}"


def _quoted(path: Path, url: str, field: str) -> str:
    """`_at` for a value written in quotes, which is where it starts."""
    return _at(path, f'"{url}"', field)


def _serve_archive(project: Path, server: str) -> None:
    site = project / "newsletter.yaml"
    text = site.read_text(encoding="utf-8").replace("https://example.org/roundup/", f"{server}/archive/")
    site.write_text(text, encoding="utf-8")
    reply_on_the_from_domain(project)


def _lines(output: str, kind: str) -> list[str]:
    return [line.removeprefix(f"{kind}: ") for line in output.splitlines() if line.startswith(f"{kind}: ")]


def test_dead_links_are_errors_where_they_are_written_and_redirects_warnings(project, run, link_server):
    server, refused = link_server.url, _closed_port()
    _serve_archive(project, server)
    path = write_issue(project, _issue(server, refused))
    result = run("check", path, "--links", "--timeout", TIMEOUT)
    assert result.exit_code == 1, result.output
    body = _at(path, f"Also [this]({server}/gone)", "items[0].body", column=False)
    errors = _lines(result.output, "error")
    refused_error = next(e for e in errors if refused in e)
    no_port = errors.pop()  # the last line, whose reason Python words
    assert no_port.startswith(f"{_quoted(path, 'http://127.0.0.1:99999/', 'items[0].links[6].url')}: link ")
    assert refused_error.startswith(
        f"{_quoted(path, refused + '/', 'items[0].links[3].url')}: link {refused}/ is dead: cannot connect ("
    )
    assert [e for e in errors if e != refused_error] == [
        f"{body}: link {server}/gone is dead: 404 Not Found",
        f"{_quoted(path, server + '/broken', 'items[0].links[0].url')}: link {server}/broken is dead: "
        "500 Internal Server Error",
        f"{_quoted(path, server + '/loop-a', 'items[0].links[1].url')}: link {server}/loop-a is dead: "
        "it redirects in a loop (or more than 10 times)",
        f"{_quoted(path, server + '/slow', 'items[0].links[2].url')}: link {server}/slow is dead: "
        f"no answer within {TIMEOUT} s",
        f"{_quoted(path, server + '/moved-to-gone', 'items[0].links[4].url')}: link {server}/moved-to-gone is dead: "
        f"404 Not Found (at {server}/gone, where it redirects)",
        f"{_quoted(path, server + '/gone', 'items[0].links[5].url')}: link {server}/gone is dead: 404 Not Found",
    ]
    warnings = [w for w in _lines(result.output, "warning") if "plain http" not in w]
    assert warnings == [
        f"{_quoted(path, server + '/heavy.png', 'items[0].image.src')}: image {server}/heavy.png is 300 KB: "
        "every subscriber who opens the email downloads it; make it smaller than 200 KB",
        f"{_at(path, 'the old one', 'items[0].body', column=False)}: link {server}/moved redirects (301) to "
        f"{server}/live: link there directly",
    ]
    assert "test.yaml: valid, 1 items, HTML" in result.output and ", 13 links fetched, 7 dead\n" in result.output
    seen = link_server.seen
    # A server that refuses HEAD, or drops the connection, is asked again as a browser asks: alive.
    assert seen.paths("HEAD").count("/no-head") == 1 and seen.paths("GET").count("/no-head") == 1
    assert "/drops-head" in seen.paths("GET")
    # Each address once, however often it is written: /gone twice in the issue, and at the end of a redirect.
    assert seen.paths("HEAD").count("/gone") == 2 and seen.paths("GET").count("/gone") == 2
    assert "/archive/" in seen.paths()  # newsletter.yaml's archive_url reaches the message
    assert all(agent == USER_AGENT for _, _, agent in seen.requests)
    # The issue's own web page (the send publishes it), the unsubscribe link and mailto: are not fetched.
    assert not [p for p in seen.paths() if p.startswith("/archive/test") or "unsubscribe" in p]


def test_without_links_nothing_is_fetched(project, run, link_server):
    _serve_archive(project, link_server.url)
    path = write_issue(project, _issue(link_server.url, _closed_port()))
    result = run("check", path)
    assert result.exit_code == 0, result.output
    assert "fetched" not in result.output and link_server.seen.requests == []


def test_a_few_addresses_at_a_time_and_an_image_without_a_length_is_measured_by_reading_it(project, run, link_server):
    server = link_server.url
    _serve_archive(project, server)
    links = "\n".join(f'      - {{text: "Page {n}", url: "{server}/hold/{n}"}}' for n in range(12))
    path = write_issue(
        project,
        _issue(server, "")
        .split("    body:")[0]
        .replace("/heavy.png", "/heavy-unsized.png")
        .replace("    image:", "    body: Something.\n    image:")
        + f"    links:\n{links}\n",
    )
    result = run("check", path, "--links", "--timeout", "5")
    assert result.exit_code == 0, result.output
    assert 1 < link_server.seen.most_in_flight <= AT_ONCE
    assert [w for w in _lines(result.output, "warning") if "plain http" not in w] == [
        f"{_quoted(path, server + '/heavy-unsized.png', 'items[0].image.src')}: image {server}/heavy-unsized.png is "
        "over 200 KB: every subscriber who opens the email downloads it; make it smaller than 200 KB"
    ]


def test_an_address_written_in_the_projects_template_is_fetched_and_named_by_its_line(project, run, link_server):
    server = link_server.url
    _serve_archive(project, server)
    template = project / "templates" / "email.mjml.j2"
    text = template.read_text(encoding="utf-8")
    footer = '<p><a href="{{ web_version_url }}">View in your browser</a></p>'
    template.write_text(text.replace(footer, footer + f'\n<p><a href="{server}/gone">Our campaigns</a></p>'))
    line = next(n for n, x in enumerate(template.read_text(encoding="utf-8").splitlines(), 1) if "/gone" in x)
    path = write_issue(project, _issue(server, "").split("    image:")[0] + "    body: Something.\n")
    result = run("check", path, "--links", "--timeout", TIMEOUT)
    assert result.exit_code == 1
    assert _lines(result.output, "error") == [
        f"templates/email.mjml.j2:{line}: link {server}/gone is dead: 404 Not Found"
    ]


def test_a_password_in_a_link_or_a_redirect_is_never_printed(project, run, link_server):
    server = link_server.url
    with_password = server.replace("http://", "http://ann:s3cret@")
    elsewhere = quote(f"{with_password}/live?from=redirect", safe="")
    path = write_issue(
        project,
        _issue(server, "").split("    image:")[0]
        + f'    body: "[gone]({with_password}/gone) and [moved]({server}/to?{elsewhere})"\n',
    )
    result = run("check", path, "--links", "--timeout", "5")
    assert result.exit_code == 1
    assert "ann:s3cret@" not in result.output  # (the second link's query holds it encoded, as the issue writes it)
    errors, warnings = _lines(result.output, "error"), _lines(result.output, "warning")
    shown = server.replace("http://", "http://…@")
    assert any(f"link {shown}/gone is dead: 404 Not Found" in e for e in errors), errors
    assert any(f"redirects (302) to {shown}/live?from=redirect" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("location", "why"),
    [
        # Where cloud machines answer with their credentials: never asked, whoever redirects there.
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("http://[fe80::1]/", "fe80::1, a link-local address"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254, a link-local address"),
        ("http://0.0.0.0/", "0.0.0.0, the unspecified address, which reaches this machine; not followed"),
        ("file:///etc/passwd", "a file: address, not a web page"),
        ("javascript:alert(1)", "a javascript: address, not a web page"),
    ],
)
def test_a_redirect_off_the_web_is_dead_and_never_followed(project, run, link_server, location, why):
    server = link_server.url
    path = write_issue(
        project, _issue(server, "").split("    image:")[0] + f'    body: "[odd]({server}/to?{location})"\n'
    )
    result = run("check", path, "--links", "--timeout", TIMEOUT)
    assert result.exit_code == 1
    (error,) = [e for e in _lines(result.output, "error") if "/to?" in e]
    assert f": link {server}/to?" in error and f" is dead: it redirects to {why}" in error, error


@pytest.mark.parametrize(
    ("page", "target", "followed"),
    [
        ("93.184.215.14", "10.0.0.8", False),  # from the web into a private network: nobody outside reaches it
        ("93.184.215.14", "127.0.0.1", False),  # nor this machine
        ("93.184.215.14", "2606:4700::1111", True),
        ("10.0.0.7", "10.0.0.8", True),  # an intranet's own links, checked from inside
        ("127.0.0.1", "127.0.0.1", True),
        ("10.0.0.7", "169.254.169.254", False),  # link-local, from anywhere
    ],
)
def test_which_redirects_between_networks_are_followed(page, target, followed):
    from ipaddress import ip_address

    assert (redirect_refusal(target, [ip_address(page)], [ip_address(target)]) is None) is followed


@pytest.mark.parametrize("timeout", ["nan", "inf", "1e9"])
def test_a_timeout_that_is_no_number_of_seconds_is_refused_not_every_link_dead(project, run, timeout):
    result = run("check", "--links", "--timeout", timeout, f"issues/{SEED}.yaml")
    assert result.exit_code == 1 and "--timeout must be a number of seconds" in result.output
    assert "is dead" not in result.output
