"""The web archive: which issues it shows, what their pages hold, the feed, and `archive --out`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import feedparser
import html5lib
import lxml.html
import pytest

from newsletter.archive import Archive
from newsletter.project import open_project
from newsletter.unsubscribe import read_token

from .support import MINIMAL, SECRET, SEED, write_issue, write_list

ISSUE = f"issues/{SEED}.yaml"
ARCHIVE = "https://example.org/roundup/"
SEED_PAGE = f"{SEED}/"


def _archive(project: Path) -> Archive:
    return Archive(open_project(project))


def _send_to_ann(run, issue: str = ISSUE):
    result = run("send", issue, "--to", write_list(Path.cwd(), ["email,name", "ann@example.com,Ann Example"]), "--yes")
    assert result.exit_code == 0, result.output
    return result


def _issue(project: Path, name: str, *, date: str = "2021-05-03", extra: str = "") -> Path:
    text = f"id: {name}\n" + MINIMAL.strip().replace("2021-05-03", date) + "\n" + extra
    return write_issue(project, text.replace('title: "A roundup"', f'title: "Roundup {name}"'), f"{name}.yaml")


def _valid_html(body: bytes) -> None:
    # Strict: the first parse error raises, with where it is.
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(body)


def _links(html: str, text: str) -> list[str]:
    return [a.get("href") for a in lxml.html.fromstring(html).iter("a") if a.text_content().strip() == text]


def test_an_issue_sent_to_the_list_is_published_and_a_test_copy_publishes_nothing(project, run, smtp_server, inbox):
    archive = _archive(project)
    assert run("send", ISSUE, "--test", "advisor@example.org").exit_code == 0
    assert archive.page(SEED_PAGE) is None
    assert SEED not in archive.page("").body.decode()
    assert feedparser.parse(archive.page("feed.xml").body).entries == []

    _send_to_ann(run)
    # The same Archive object: a running `serve` sees the send without a restart.
    page = archive.page(SEED_PAGE)
    assert page is not None and page.content_type == "text/html; charset=utf-8"
    assert "Crisis and Tactical Round Up: Spring Solidarity" in page.body.decode()
    assert _links(archive.page("").body.decode(), "Crisis and Tactical Round Up: Spring Solidarity") == [SEED_PAGE]


def test_every_page_is_valid_html_and_the_feed_is_atom_newest_first(project, run):
    _issue(project, "later", date="2021-06-07", extra="preheader: 'Fish & <chips> \"quoted\"'\npublished: true\n")
    _issue(project, "earlier", date="2021-04-01", extra="published: true\nlang: fr-CA\n")
    archive = _archive(project)
    pages = archive.pages()
    assert set(pages) == {"", "feed.xml", "later/", "earlier/"}
    for name, page in pages.items():
        if name != "feed.xml":
            _valid_html(page.body)
            tree = lxml.html.fromstring(page.body)
            assert tree.get("lang") and tree.findtext(".//title").strip()

    index = pages[""].body.decode()
    assert _links(index, "Roundup later") == ["later/"]
    assert index.index("Roundup later") < index.index("Roundup earlier")
    assert "<p>Fish &amp; &lt;chips&gt; &#34;quoted&#34;</p>" in index  # escaped: data, not markup

    feed = feedparser.parse(pages["feed.xml"].body)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.feed.title == "Amnesty International Canada (English-speaking section)"
    assert feed.feed.updated.startswith("2021-06-07")
    assert {link.rel: link.href for link in feed.feed.links} == {"self": f"{ARCHIVE}feed.xml", "alternate": ARCHIVE}
    assert [(e.title, e.link, e.updated[:10]) for e in feed.entries] == [
        ("Roundup later", f"{ARCHIVE}later/", "2021-06-07"),
        ("Roundup earlier", f"{ARCHIVE}earlier/", "2021-04-01"),
    ]
    assert feed.entries[0].summary == 'Fish & <chips> "quoted"'
    assert len({e.id for e in feed.entries}) == 2


def test_a_draft_never_appears_even_once_sent(project, run, smtp_server, inbox):
    draft = _issue(project, "draft", extra="published: false\n")
    _issue(project, "unsent")  # neither sent nor marked: not yet
    _send_to_ann(run, str(draft))
    assert inbox.recipients() == {"ann@example.com": 1}
    archive = _archive(project)
    assert set(archive.pages()) == {"", "feed.xml"}
    assert archive.page("draft/") is None
    assert "draft" not in archive.page("").body.decode()
    assert b"draft" not in archive.page("feed.xml").body


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../",
        "../newsletter.yaml",
        "/etc/passwd",
        "/",
        "//",
        "%2e%2e/",
        "%2e%2e%2fnewsletter.yaml",
        "..%2f..%2fetc%2fpasswd",
        "issues/",
        f"issues/{SEED}.yaml",
        "state/ledger.sqlite3",
        "templates/email.mjml.j2",
        SEED,  # no final slash
        f"{SEED}/index.html",
        f"{SEED}/../feed.xml",
        f"./{SEED}/",
        f"{SEED}//",
        f"%2F{SEED}/",
        "index.html",
        "feed.xml/",
        "FEED.XML",
        "\x00",
        "a" * 5000,
        f"{SEED}/\x00",
    ],
)
def test_paths_outside_the_archive_find_nothing(project, path):
    write_issue(project, Path(ISSUE).read_text(encoding="utf-8") + "published: true\n", f"{SEED}.yaml")
    archive = _archive(project)
    assert archive.page(SEED_PAGE) is not None
    assert archive.page(path) is None


def test_the_web_version_holds_no_personal_data(project, run, smtp_server, inbox):
    _send_to_ann(run)
    ann = inbox.by_recipient("ann@example.com").get_body(("html",)).get_content()
    assert "Hi Ann Example," in ann  # what must not come through
    html = _archive(project).page(SEED_PAGE).body.decode()
    assert "Ann" not in html and "ann@example.com" not in html.lower()
    assert "Hi there," in html
    assert "unsubscribe?t=" not in html and "t=" not in " ".join(_links(html, "Unsubscribe"))
    for word in re.findall(r"[A-Za-z0-9_.\-]{20,}", html):
        assert read_token(SECRET, "roundup.example.org", word) is None
    # Its Unsubscribe link explains how to leave, on the index.
    assert _links(html, "Unsubscribe") == ["../#unsubscribe"]
    index = _archive(project).page("").body
    assert lxml.html.fromstring(index).get_element_by_id("unsubscribe") is not None
    # The web version does not link to itself.
    assert _links(html, "View in your browser") == []


def test_view_in_your_browser_is_exactly_the_address_of_its_page(project, run, smtp_server, inbox):
    _send_to_ann(run)
    message = inbox.by_recipient("ann@example.com")
    url = f"{ARCHIVE}{SEED}/"
    assert _links(message.get_body(("html",)).get_content(), "View in your browser") == [url]
    text_links = re.findall(r"^View in your browser: (\S+?)\r?$", message.get_body(("plain",)).get_content(), re.M)
    assert text_links == [url]
    assert _archive(project).page(url.removeprefix(ARCHIVE)) is not None


def test_an_id_that_needs_encoding_is_linked_encoded_and_found_either_way(project, run):
    write_issue(project, "id: été 2021\npublished: true\n" + MINIMAL, "ete.yaml")
    archive = _archive(project)
    assert _links(archive.page("").body.decode(), "A roundup") == ["%C3%A9t%C3%A9%202021/"]
    assert archive.page("%C3%A9t%C3%A9%202021/") is not None
    assert archive.page("été 2021/", decoded=True) == archive.page("%C3%A9t%C3%A9%202021/")
    assert feedparser.parse(archive.page("feed.xml").body).entries[0].link == f"{ARCHIVE}%C3%A9t%C3%A9%202021/"
    out = project / "site"
    assert run("archive", "--out", out).exit_code == 0
    assert (out / "été 2021" / "index.html").read_bytes() == archive.page("été 2021/", decoded=True).body


def test_archive_out_writes_the_same_bytes_as_the_pages(project, run, smtp_server, inbox):
    _send_to_ann(run)
    _issue(project, "also", date="2021-06-07", extra="published: true\n")
    out = project / "public" / "roundup"
    result = run("archive", "--out", out)
    assert result.exit_code == 0, result.output
    pages = _archive(project).pages()
    expected = {"": "index.html", "feed.xml": "feed.xml", SEED_PAGE: f"{SEED}/index.html", "also/": "also/index.html"}
    # The seed's second item has five sample posts, each with its share page.
    expected |= {f"{SEED}/share/2-{n}.html": f"{SEED}/share/2-{n}.html" for n in range(1, 6)}
    assert set(pages) == set(expected)
    for name, file in expected.items():
        assert (out / file).read_bytes() == pages[name].body
        assert file in result.output


def test_archive_out_removes_an_issue_made_a_draft_and_nothing_else(project, run):
    issue = _issue(project, "oops", extra="published: true\n")
    out = project / "public"
    out.mkdir()
    (out / "robots.txt").write_text("User-agent: *\n")
    assert run("archive", "--out", out).exit_code == 0
    assert (out / "oops" / "index.html").is_file()
    (out / "oops" / "notes.txt").write_text("mine")
    issue.write_text(issue.read_text().replace("published: true", "published: false"))
    assert run("archive", "--out", out).exit_code == 0
    assert not (out / "oops" / "index.html").exists()
    assert (out / "oops" / "notes.txt").read_text() == "mine"
    assert (out / "robots.txt").is_file()
    assert b"oops" not in (out / "index.html").read_bytes() + (out / "feed.xml").read_bytes()


def test_an_issue_that_fails_check_is_left_out_with_a_warning(project, run):
    _issue(project, "good", extra="published: true\n")
    write_issue(project, "id: bad\npublished: true\ntitle: Broken\ndate: 2021-05-03\nitems: []\n", "bad.yaml")
    result = run("archive", "--out", project / "out")
    assert result.exit_code == 0, result.output
    assert re.search(r"warning: issues/bad\.yaml: left out of the web archive", result.output)
    assert "warning: issues/bad.yaml:5" in result.output  # and check's own words, with the line
    assert not (project / "out" / "bad").exists()
    assert (project / "out" / "good" / "index.html").is_file()


def test_an_edit_shows_at_once_and_an_unchanged_file_is_not_rendered_again(project, run):
    issue = _issue(project, "live", extra="published: true\n")
    archive = _archive(project)
    first = archive.page("live/")
    assert archive.page("live/") is first  # nothing changed: the same page, not a new rendering
    issue.write_text(issue.read_text().replace("Roundup live", "Roundup edited"))
    os.utime(issue, ns=(1, 1))  # an edit must show even if it leaves the time as it was... or moves it back
    assert "Roundup edited" in archive.page("live/").body.decode()
    assert "Roundup edited" in archive.page("").body.decode()
    issue.unlink()
    assert archive.page("live/") is None


def test_two_files_with_one_id_show_once_with_a_warning(project, run):
    _issue(project, "same", extra="published: true\n")
    write_issue(project, (project / "issues" / "same.yaml").read_text(), "z-copy.yaml")
    archive = _archive(project)
    assert set(archive.pages()) == {"", "feed.xml", "same/"}
    assert any("z-copy.yaml" in str(w.file) and "same id" in w.message for w in archive.warnings)


def test_without_archive_url_archive_says_what_to_add(project, run):
    site = project / "newsletter.yaml"
    site.write_text(site.read_text().replace(f"archive_url: {ARCHIVE}\n", ""))
    result = run("archive", "--out", project / "out")
    assert result.exit_code == 1
    assert "newsletter.yaml: archive_url: archive_url is not set" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("archive_url", "expected"),
    [
        ("https://example.org/roundup/", "https://example.org/roundup/x%20y/"),
        ("https://example.org/roundup", "https://example.org/roundup/x%20y/"),
        ("https://example.org", "https://example.org/x%20y/"),
        ("https://example.org/r/?utm=1#top", "https://example.org/r/x%20y/"),
    ],
)
def test_the_web_version_url_is_below_the_archive_folder(project, archive_url, expected):
    site = open_project(project).site.model_copy(update={"archive_url": archive_url})
    assert site.web_version_url("x y") == expected


# -- found by a hostile test: what the archive must never do ------------------------------------


def test_archive_out_never_writes_over_a_file_it_did_not_write(project, run):
    site = project / "www"
    site.mkdir()
    (site / "index.html").write_text("<h1>The organisation's home page</h1>\n", encoding="utf-8")
    (site / "feed.xml").write_text("<rss>the blog</rss>\n", encoding="utf-8")
    issue = project / "issues" / f"{SEED}.yaml"
    issue.write_text(issue.read_text(encoding="utf-8") + "published: true\n", encoding="utf-8")
    result = run("archive", "--out", site)
    assert result.exit_code == 1
    assert "www/index.html: is not a file an earlier `newsletter archive` wrote here" in result.output
    assert "www/feed.xml: is not a file" in result.output
    assert (site / "index.html").read_text(encoding="utf-8") == "<h1>The organisation's home page</h1>\n"
    assert not (site / SEED).exists()  # nothing written at all
    # Into a folder of its own, and then again over its own files: fine.
    assert run("archive", "--out", project / "www2").exit_code == 0
    assert run("archive", "--out", project / "www2").exit_code == 0


def test_an_id_that_names_a_file_of_the_archive_is_left_out(project, run):
    seed = (project / "issues" / f"{SEED}.yaml").read_text(encoding="utf-8")
    (project / "issues" / "clash.yaml").write_text(
        seed.replace(f"id: {SEED}", "id: feed.xml") + "published: true\n", encoding="utf-8"
    )
    archive = Archive(open_project(project / "issues"))
    assert archive.page("feed.xml").content_type.startswith("application/atom+xml")
    assert any("its id, feed.xml, names a file of the archive" in str(w) for w in archive.warnings)


def test_a_damaged_ledger_keeps_what_was_published(project):
    seed = project / "issues" / f"{SEED}.yaml"
    seed.write_text(seed.read_text(encoding="utf-8") + "published: true\n", encoding="utf-8")
    (project / "issues" / "second.yaml").write_text(
        seed.read_text(encoding="utf-8").replace(f"id: {SEED}", "id: second").replace("published: true\n", ""),
        encoding="utf-8",
    )
    archive = Archive(open_project(project / "issues"))
    assert archive.page(f"{SEED}/") is not None
    (project / "state").mkdir(exist_ok=True)
    (project / "state" / "ledger.sqlite3").write_bytes(b"not a database " * 100)
    assert archive.page(f"{SEED}/") is not None and archive.page("") is not None
    assert any("cannot tell which issues were sent" in str(w) for w in archive.warnings)
    # A fresh process with a damaged ledger still shows what the files say is published.
    fresh = Archive(open_project(project / "issues"))
    assert fresh.page(f"{SEED}/") is not None
