"""The suppression store, `newsletter suppressions`, and `send` obeying it and the site's suppressions_source.

Someone who left must never be mailed again: every way an address gets in
(by hand, an import, another machine's export) is checked here against a
real send to a real SMTP server, and every way the source can fail must
stop the send before anyone is mailed.
"""

from __future__ import annotations

import csv
import datetime as dt
import http.server
import io
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from newsletter import suppression_source
from newsletter.subscribers import read_suppression_addresses
from newsletter.suppressions import SuppressionStore, Why
from newsletter.unsubscribe import export_key

from .support import SECRET, SEED, cli_env, write_list

ISSUE = f"issues/{SEED}.yaml"
JAN_2020 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp()
JAN_2030 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()


def _rows(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out)))


# -- the store ------------------------------------------------------------------


def test_store_compares_addresses_as_send_does_and_keeps_the_first_reason(tmp_path):
    with SuppressionStore.open(tmp_path) as store:
        assert store.add("Ann@Example.org", Why.MANUAL, issue="2021-05", at=JAN_2020)
        # Letter case and a zero-width space pasted from a web page are the same person: the first record stays.
        assert not store.add("ann@example.org\u200b", Why.IMPORT)
        assert not store.add(" ANN@EXAMPLE.ORG ", Why.BOUNCE)
        assert store.add("bob@example.org", Why.MANUAL, at=JAN_2030)
        assert store.keys() == {"ann@example.org", "bob@example.org"}
        ann = store.get("ann@EXAMPLE.org")
        assert (ann.email, ann.why, ann.issue, ann.when) == (
            "Ann@Example.org",
            Why.MANUAL,
            "2021-05",
            "2020-01-01T00:00:00Z",
        )
        assert [r.email for r in store.rows()] == ["Ann@Example.org", "bob@example.org"]
        assert [r.email for r in store.rows(since=JAN_2030)] == ["bob@example.org"]
        assert store.remove("ANN@example.org\u2060")
        assert not store.remove("ann@example.org")
        assert store.keys() == {"bob@example.org"}
    # It is a file in state/, apart from outbox/: reopened, it still knows.
    with SuppressionStore.open(tmp_path) as store:
        assert store.keys() == {"bob@example.org"}
    assert (tmp_path / "state" / "suppressions.sqlite3").is_file()


def test_store_import_counts_new_ones_and_export_parses_back_to_the_same_rows(tmp_path):
    listed = write_list(tmp_path, ["Email Address;date", "a@example.org;2021", "B@example.org;2022", "c@example.org;x"])
    with SuppressionStore.open(tmp_path) as store:
        store.add("b@example.org", Why.MANUAL, issue='spring, "quoted"', at=JAN_2020)
        assert store.add_many(read_suppression_addresses(listed)) == 2
        assert store.add_many(read_suppression_addresses(listed)) == 0
        out = io.StringIO()
        assert store.export_csv(out) == 3
        rows = list(store.rows())
    parsed = list(csv.reader(io.StringIO(out.getvalue())))
    assert parsed[0] == ["email", "when", "why", "issue"]
    assert parsed[1:] == [[r.email, r.when, str(r.why), r.issue or ""] for r in rows]
    assert parsed[1] == ["b@example.org", "2020-01-01T00:00:00Z", "manual", 'spring, "quoted"']
    assert {row[2] for row in parsed[2:]} == {"import"}


def test_what_came_from_the_web_gives_way_to_a_later_record_of_another_kind(tmp_path):
    # The page's undo takes back only the row it wrote (why and time): a bounce, the team's record or an import
    # that came after must not be taken back with it, so it replaces that row; the reverse never happens.
    listed = write_list(tmp_path, ["email", "imported@example.org"])
    with SuppressionStore.open(tmp_path) as store:
        for address in ("page@example.org", "click@example.org", "imported@example.org", "kept@example.org"):
            assert store.add(address, Why.PAGE if address != "click@example.org" else Why.ONE_CLICK, issue="spring")
        assert not store.add("page@example.org", Why.BOUNCE, evidence={"status": "5.1.1"}, at=JAN_2030)
        assert not store.add("click@example.org", Why.MANUAL, at=JAN_2030)
        assert store.add_many(read_suppression_addresses(listed)) == 0  # already there; now for the import
        assert not store.add("kept@example.org", Why.ONE_CLICK)  # the person again, on the web: the first stays
        rows = {row.email: row for row in store.rows()}
        assert not store.add("page@example.org", Why.PAGE)  # and a later click never undoes the bounce
        assert store.get("page@example.org").why == Why.BOUNCE
    page = rows["page@example.org"]
    assert (page.why, page.at, page.issue, page.evidence) == (Why.BOUNCE, JAN_2030, None, {"status": "5.1.1"})
    assert (rows["click@example.org"].why, rows["click@example.org"].issue) == (Why.MANUAL, None)
    assert rows["imported@example.org"].why == Why.IMPORT
    assert (rows["kept@example.org"].why, rows["kept@example.org"].issue) == (Why.PAGE, "spring")


def test_remove_if_takes_back_only_that_row(tmp_path):
    with SuppressionStore.open(tmp_path) as store:
        store.add("ann@example.org", Why.PAGE, at=JAN_2020)
        assert not store.remove_if("ann@example.org", Why.PAGE, JAN_2020 + 1)
        assert not store.remove_if("ann@example.org", Why.ONE_CLICK, JAN_2020)
        assert store.remove_if("ANN@example.org", Why.PAGE, JAN_2020)
        assert store.keys() == set()
        assert not store.remove_if("ann@example.org", Why.PAGE, JAN_2020)


_ADD_500 = """
import sys
from pathlib import Path
from newsletter.subscribers import read_suppression_addresses
from newsletter.suppressions import SuppressionStore, Why
with SuppressionStore.open(Path(sys.argv[1])) as store:
    for i in range(500):
        store.add(f"{sys.argv[2]}{i}@example.org", Why.ONE_CLICK)
"""


def test_two_processes_adding_at_once_lose_nothing(tmp_path):
    SuppressionStore.open(tmp_path).close()  # made once, as `serve` or `send` would have
    writers = [
        subprocess.Popen([sys.executable, "-c", _ADD_500, str(tmp_path), prefix], env=cli_env(), stderr=subprocess.PIPE)
        for prefix in ("first", "second")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    with SuppressionStore.open(tmp_path) as store:
        keys = store.keys()
    assert len(keys) == 1000
    assert {f"{p}{i}@example.org" for p in ("first", "second") for i in range(500)} == keys


# -- the command ----------------------------------------------------------------


def test_add_list_remove_through_the_command(project, run):
    added = run("suppressions", "add", "Ann@Example.org", "Bob Smith <bob@example.org>")
    assert added.exit_code == 0, added.output
    assert "added Ann@Example.org" in added.output and "added bob@example.org" in added.output
    again = run("suppressions", "add", "ann@example.org")
    assert "already suppressed: ann@example.org" in again.output
    listed = run("suppressions", "list")
    assert listed.exit_code == 0
    lines = [line for line in listed.stdout.splitlines() if "@" in line]
    assert len(lines) == 2
    assert re.fullmatch(r"Ann@Example\.org  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  manual  -", lines[0]), lines[0]
    removed = run("suppressions", "remove", "BOB@example.org", "zed@example.org")
    assert removed.exit_code == 0
    assert "removed BOB@example.org" in removed.output and "not suppressed: zed@example.org" in removed.output
    assert "bob@" not in run("suppressions", "list").stdout


def test_add_refuses_what_is_not_an_address_and_adds_none(project, run):
    result = run("suppressions", "add", "ok@example.org", "not-an-address", "x\x1b[2J@example.org")
    assert result.exit_code == 1
    assert "error: add: 'not-an-address' is not an email address" in result.output
    assert "the address contains a control character (U+001B)" in result.output
    assert "\x1b" not in result.output and "Traceback" not in result.output
    assert "ok@example.org" not in run("suppressions", "list").stdout


def test_list_escapes_what_a_terminal_would_obey(project, run):
    with SuppressionStore.open(project) as store:
        store.add("evil\u202eelpmaxe@example.org", Why.ONE_CLICK, issue="x\x1b]0;owned\x07")
    shown = run("suppressions", "list").stdout
    assert "evil\\u202eelpmaxe@example.org" in shown and "x\\x1b]0;owned\\x07" in shown
    assert "\u202e" not in shown and "\x1b" not in shown


def test_remove_warns_when_the_project_list_still_has_the_address(project, run):
    (project / "suppressions.csv").write_text("email\ncat@example.org\n", encoding="utf-8")
    run("suppressions", "add", "cat@example.org")
    result = run("suppressions", "remove", "cat@example.org")
    assert "removed cat@example.org" in result.output
    assert "cat@example.org is still in suppressions.csv, so send still skips it" in result.stderr


def test_import_says_how_many_were_new_and_refuses_a_file_that_is_not_a_list(project, run):
    run("suppressions", "add", "a@example.org")
    good = write_list(project, ["email", "a@example.org", "b@example.org", "c@example.org"], "crm.csv")
    result = run("suppressions", "import", good)
    assert result.exit_code == 0, result.output
    assert "imported crm.csv: 2 new, 1 already suppressed (3 addresses)" in result.output
    bad = write_list(project, ["email", "d@example.org", "d@example.org;2021-05-01", "e@example.org"], "bad.csv")
    refused = run("suppressions", "import", bad)
    assert refused.exit_code == 1
    assert refused.stderr.strip() == "error: bad.csv:3: 'd@example.org;2021-05-01' is not an email address"
    missing = run("suppressions", "import", "nowhere.csv")
    assert (missing.exit_code, missing.stderr.strip()) == (1, "error: nowhere.csv: no such file")
    export = _rows(run("suppressions", "export").stdout)
    assert sorted(r["email"] for r in export) == ["a@example.org", "b@example.org", "c@example.org"]


def test_export_writes_csv_that_parses_back_and_since_filters(project, run):
    with SuppressionStore.open(project) as store:
        store.add("old@example.org", Why.BOUNCE, issue="2019-12", at=JAN_2020)
        store.add('new, "odd"@example.org', Why.ONE_CLICK, issue=SEED, at=JAN_2030)
        expected = [{"email": r.email, "when": r.when, "why": str(r.why), "issue": r.issue or ""} for r in store.rows()]
    whole = run("suppressions", "export")
    assert whole.exit_code == 0
    assert whole.stdout.splitlines()[0] == "email,when,why,issue"
    assert _rows(whole.stdout) == expected
    for since in ("2025-01-01", "2025-06-01T12:00:00+02:00", "2029-12-31T23:59:59"):
        assert [r["email"] for r in _rows(run("suppressions", "export", "--since", since).stdout)] == [
            'new, "odd"@example.org'
        ], since
    assert _rows(run("suppressions", "export", "--since", "2031-01-01").stdout) == []
    bad = run("suppressions", "export", "--since", "last tuesday")
    assert bad.exit_code == 1 and "--since: 'last tuesday' is not a date or a time" in bad.stderr
    assert bad.stdout == ""


def test_the_command_needs_a_project(tmp_path, run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("suppressions", "list")
    assert result.exit_code == 1 and "no newsletter.yaml found" in result.stderr
    assert not (tmp_path / "state").exists()


# -- send obeys the store -----------------------------------------------------------


def _list(project: Path) -> Path:
    return write_list(project, ["email", "ann@example.org", "BOB@example.org", "cat@example.org", "dan@example.org"])


def _dry_run_then_send_skip_two(project: Path, run) -> None:
    """A dry run and then the send both skip two of `_list`'s addresses, and say so."""
    dry = run("send", ISSUE, "--to", _list(project), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "skipped 2 suppressed" in dry.output
    result = run("send", ISSUE, "--to", _list(project), "--yes")
    assert result.exit_code == 0, result.output
    assert "skipped: 2 suppressed" in result.output


def test_send_skips_an_address_added_with_the_command(project, run, smtp_server, inbox):
    run("suppressions", "add", "bob@EXAMPLE.org")
    (project / "suppressions.csv").write_text("email\ncat@example.org\n", encoding="utf-8")  # read as before
    _dry_run_then_send_skip_two(project, run)
    assert inbox.recipients() == {"ann@example.org": 1, "dan@example.org": 1}


# -- the suppression source ----------------------------------------------------------


class _Source(http.server.BaseHTTPRequestHandler):
    """Answers as `serve`'s export does, or as the test tells it to fail."""

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != f"Bearer {server.key}":
            self._answer(401, b"unauthorized\n")
        else:
            server.behaviour(self)

    def _answer(self, code: int, body: bytes, content_type: str = "text/csv", length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


EXPORT = (
    "email,when,why,issue\n"
    "Bob@example.org,2026-02-03T04:05:06Z,one-click,2021-04-roundup\n"
    "dan@example.org,2026-02-04T00:00:00Z,page,\n"
)


@pytest.fixture
def source(project) -> Iterator[Callable]:
    """An HTTP server on 127.0.0.1 serving the export; the site file's suppressions_source points at it."""
    servers = []

    def start(
        behaviour: Callable[[_Source], None], *, key: str = export_key(SECRET), tls: ssl.SSLContext | None = None
    ) -> http.server.HTTPServer:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Source)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        server.behaviour, server.key, server.requests, server.release = behaviour, key, [], threading.Event()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        scheme = "https" if tls else "http"
        url = f"{scheme}://localhost:{server.server_address[1]}/unsubscribe/suppressions.csv"
        with (project / "newsletter.yaml").open("a", encoding="utf-8") as site:
            site.write(f"suppressions_source: {url}\n")
        server.url = url
        return server

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()


def test_send_skips_what_the_source_lists_and_records_it(project, run, smtp_server, inbox, source):
    server = source(lambda h: h._answer(200, EXPORT.encode()))
    _dry_run_then_send_skip_two(project, run)
    assert inbox.recipients() == {"ann@example.org": 1, "cat@example.org": 1}
    assert server.requests[-1] == ("/unsubscribe/suppressions.csv", f"Bearer {export_key(SECRET)}")
    # Recorded here with the reason, time and issue the source gave.
    exported = _rows(run("suppressions", "export").stdout)
    assert exported == [
        {"email": "Bob@example.org", "when": "2026-02-03T04:05:06Z", "why": "one-click", "issue": "2021-04-roundup"},
        {"email": "dan@example.org", "when": "2026-02-04T00:00:00Z", "why": "page", "issue": ""},
    ]


def _stall(handler: _Source) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b"email,when,why,issue\n")
    handler.wfile.flush()
    handler.server.release.wait(30)  # until the test ends: the answer never completes


def _redirect(handler: _Source) -> None:
    handler.send_response(302)
    handler.send_header("Location", "http://127.0.0.1:9/elsewhere.csv")
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.mark.parametrize(
    ("behaviour", "key", "said"),
    [
        (lambda h: h._answer(200, EXPORT.encode()), "wrong key", "answered 401 Unauthorized"),
        (lambda h: h._answer(500, b"oops"), None, "answered 500 Internal Server Error"),
        (
            lambda h: h._answer(200, b"<html><body>Please log in</body></html>\n", "text/html"),
            None,
            "not a suppression export: its first line is '<html><body>Please log in</body></html>'",
        ),
        (lambda h: h._answer(200, b"email,when,why,issue\nann@example.org,yesterday,page,\n"), None, "line 2:"),
        (lambda h: h._answer(200, b"email,when,why,issue\nnot an address,2026-01-01,page,\n"), None, "line 2:"),
        (lambda h: h._answer(200, EXPORT.encode()[:-20]), None, "cut off"),
        (lambda h: h._answer(200, EXPORT.encode(), length=len(EXPORT) + 100), None, "the answer broke off"),
        (lambda h: h._answer(200, b"\xff\xfe garbage"), None, "not UTF-8"),
        (_stall, None, "no complete answer within 1 seconds"),
        (_redirect, None, "answered 302 with a redirect to http://127.0.0.1:9/elsewhere.csv"),
    ],
    ids=["401", "500", "html", "bad-time", "bad-address", "truncated", "short-body", "binary", "stalled", "redirect"],
)
def test_send_refuses_when_the_source_cannot_be_read(
    project, run, smtp_server, inbox, source, monkeypatch, behaviour, key, said
):
    monkeypatch.setattr(suppression_source, "TIMEOUT", 1.0)
    server = source(behaviour, **({"key": key} if key else {}))
    for extra in (["--yes"], ["--dry-run"]):
        result = run("send", ISSUE, "--to", _list(project), *extra)
        assert result.exit_code == 1, result.output
        assert f"error: suppressions_source {server.url}: " in result.stderr
        assert said in result.stderr
        assert "refusing to send" in result.stderr and "Traceback" not in result.output
    assert inbox.recipients() == {}
    assert not (project / "outbox" / SEED / "dry-run").exists()
    # Nothing half-read was recorded either.
    assert _rows(run("suppressions", "export").stdout) == []


def test_send_refuses_when_the_source_is_down(project, run, smtp_server, inbox, source):
    server = source(lambda h: h._answer(200, EXPORT.encode()))
    server.shutdown()
    server.server_close()  # nothing listens on its port any more
    result = run("send", ISSUE, "--to", _list(project), "--yes")
    assert result.exit_code == 1
    assert f"error: suppressions_source {server.url}: cannot connect: " in result.stderr
    assert inbox.recipients() == {}


def test_the_source_needs_the_real_key(project, run, smtp_server, inbox, source, monkeypatch):
    source(lambda h: h._answer(200, EXPORT.encode()))
    monkeypatch.delenv("NEWSLETTER_SECRET")
    result = run("send", ISSUE, "--to", _list(project), "--dry-run")
    assert result.exit_code == 1
    assert "set NEWSLETTER_SECRET: the key that reads the suppressions_source export" in result.stderr
    monkeypatch.setenv("NEWSLETTER_SECRET", "short")
    assert "NEWSLETTER_SECRET is too weak" in run("send", ISSUE, "--to", _list(project), "--yes").stderr
    assert inbox.recipients() == {}


def test_a_source_in_the_clear_across_a_network_is_refused(project, run):
    with (project / "newsletter.yaml").open("a", encoding="utf-8") as site:
        site.write("suppressions_source: http://example.org/unsubscribe/suppressions.csv\n")
    result = run("check", ISSUE)
    assert result.exit_code == 1
    assert re.search(r"newsletter\.yaml:\d+:\d+: suppressions_source: .*must be an https address", result.stderr)


def test_the_source_certificate_is_verified(project, run, smtp_server, inbox, source, monkeypatch, tmp_path):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    server = source(lambda h: h._answer(200, EXPORT.encode()), tls=context)
    refused = run("send", ISSUE, "--to", _list(project), "--yes")
    assert refused.exit_code == 1
    assert f"error: suppressions_source {server.url}: its certificate is not trusted" in refused.stderr
    assert inbox.recipients() == {}
    # A CA the machine is told to trust (OpenSSL's SSL_CERT_FILE) is trusted.
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    result = run("send", ISSUE, "--to", _list(project), "--yes")
    assert result.exit_code == 0, result.output
    assert inbox.recipients() == {"ann@example.org": 1, "cat@example.org": 1}


def test_send_serve_and_the_source_ask_for_the_key_in_the_same_words(project, run, smtp_server, source, monkeypatch):
    # One rule for the key, wherever it is needed: unset, each says what it is for and how to make one;
    # too weak, each refuses it with the very same line.
    source(lambda h: h._answer(200, EXPORT.encode()))
    commands = {
        "send": ("send", ISSUE, "--to", _list(project), "--yes"),
        "dry run with a source": ("send", ISSUE, "--to", _list(project), "--dry-run"),
        "serve": ("serve", "--port", "1"),
    }
    monkeypatch.delenv("NEWSLETTER_SECRET")
    for name, command in commands.items():
        said = run(*command).stderr.strip()
        assert re.fullmatch(r"error: set NEWSLETTER_SECRET: the key that [^\n]+ \(to make one: python -c .*\)", said), (
            name,
            said,
        )
    monkeypatch.setenv("NEWSLETTER_SECRET", "password1")
    refusals = {name: run(*command).stderr.strip().splitlines()[-1] for name, command in commands.items()}
    assert len(set(refusals.values())) == 1, refusals
    assert refusals["serve"].startswith("error: NEWSLETTER_SECRET is too weak to sign unsubscribe links")


def test_someone_who_unsubscribes_during_the_send_is_not_mailed(project, run, smtp_server, inbox):
    # While the first message goes out, the last person on the list clicks "unsubscribe" (serve records it):
    # the send planned before that must not mail her.
    listed = write_list(project, ["email", *(f"early{i}@example.org" for i in range(6)), "Zoe@Example.org"])

    def unsubscribe_zoe(rcpt: str) -> None:
        if rcpt == "early0@example.org":
            with SuppressionStore.open(project) as store:
                store.add("zoe@example.org", Why.ONE_CLICK, issue=SEED)

    smtp_server.on_rcpt = unsubscribe_zoe
    result = run("send", ISSUE, "--to", listed, "--yes", "--connections", "1")
    assert result.exit_code == 0, result.output
    assert "zoe@example.org" not in inbox.recipients()
    assert sum(inbox.recipients().values()) == 6
    assert "sent 6, failed 0, 1 left during the send" in result.output
    status = run("status", ISSUE).output
    assert re.search(r"suppressed\s+1\b", status), status
    # The next run does not try her again either.
    again = run("send", ISSUE, "--to", listed, "--yes")
    assert "nothing to send" in again.output and "zoe" not in str(inbox.recipients())


# Valid addresses (`=`, `|`, `'`, `/`, `!`, `+`, `-` are all allowed in a local part) that a spreadsheet would run.
FORMULAS = ["=cmd|'/ccalc'!a0@example.org", "+1+1@example.org", "-2+3@example.org", "'=quoted@example.org"]


def test_the_export_never_hands_a_spreadsheet_a_formula_and_a_send_elsewhere_reads_it_back(
    project, run, smtp_server, inbox, source
):
    with SuppressionStore.open(project) as store:
        for i, address in enumerate(FORMULAS):
            store.add(address, Why.ONE_CLICK, issue="@SUM(A1)" if i == 0 else None, at=JAN_2020 + i)
        out = io.StringIO()
        store.export_csv(out)
    exported = run("suppressions", "export").stdout
    assert exported == out.getvalue()
    cells = [cell for row in csv.reader(io.StringIO(exported)) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")], cells
    # Another machine's send reads it as `serve` exports it, and has each address back exactly as it was.
    rows = suppression_source.parse_export("https://example.org/x.csv", exported.encode())
    assert [(email, issue) for email, _, _, issue in rows] == [(FORMULAS[0], "@SUM(A1)")] + [
        (address, None) for address in FORMULAS[1:]
    ]
    (project / "state" / "suppressions.sqlite3").unlink()  # the sending machine starts with none of them
    source(lambda h: h._answer(200, exported.encode()))
    listed = write_list(project, ["email", "ann@example.org", *(f'"{a}"' for a in FORMULAS)])
    result = run("send", ISSUE, "--to", listed, "--yes")
    assert result.exit_code == 0, result.output
    assert inbox.recipients() == {"ann@example.org": 1}


def test_the_source_suppresses_an_address_written_with_a_display_name(project, run, smtp_server, inbox, source):
    source(
        lambda h: h._answer(200, b'email,when,why,issue\n"Ann Smith <Ann@example.org>",2026-02-03T04:05:06Z,page,\n')
    )
    result = run("send", ISSUE, "--to", _list(project), "--yes")
    assert result.exit_code == 0, result.output
    assert "ann@example.org" not in inbox.recipients()
    assert [r["email"] for r in _rows(run("suppressions", "export").stdout)] == ["Ann@example.org"]


def _trickle_headers(handler: _Source) -> None:
    # Each byte comes well within any per-read timeout; the headers never end until the test does.
    handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
    handler.wfile.flush()
    for _ in range(100):
        if handler.server.release.wait(0.1):
            return
        handler.wfile.write(b"X")
        handler.wfile.flush()


def test_the_whole_fetch_is_bounded_however_slowly_the_source_answers(
    project, run, smtp_server, inbox, source, monkeypatch
):
    monkeypatch.setattr(suppression_source, "TIMEOUT", 1.0)
    server = source(_trickle_headers)
    result = run("send", ISSUE, "--to", _list(project), "--yes")
    assert result.exit_code == 1, result.output
    assert f"error: suppressions_source {server.url}: no complete answer within 1 seconds" in result.stderr
    assert inbox.recipients() == {}


@pytest.fixture
def toronto(monkeypatch):
    """This process's local time is Toronto's (UTC-5 in February), not UTC."""
    monkeypatch.setenv("TZ", "America/Toronto")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_time_without_an_offset_is_utc_everywhere(project, run, smtp_server, inbox, source, toronto):
    source(lambda h: h._answer(200, b"email,when,why,issue\nbob@example.org,2026-02-04T00:00:00,page,\n"))
    assert run("send", ISSUE, "--to", _list(project), "--yes").exit_code == 0
    assert _rows(run("suppressions", "export").stdout)[0]["when"] == "2026-02-04T00:00:00Z"
    for since, listed in (("2026-02-04T00:00:00", ["bob@example.org"]), ("2026-02-04T00:00:01", [])):
        assert [r["email"] for r in _rows(run("suppressions", "export", "--since", since).stdout)] == listed


def test_import_keeps_each_address_as_written(project, run):
    # Stored as the comparison key (lower-cased, xn-- domain), the CRM would get back addresses nobody wrote.
    crm = write_list(
        project,
        ["email", "Zoë@Bücher.example", '"Ann Smith <Ann@Example.org>"', "ann@example.org", "ZOË@bücher.example"],
        "crm.csv",
    )
    result = run("suppressions", "import", crm)
    assert result.exit_code == 0, result.output
    assert "imported crm.csv: 2 new, 0 already suppressed (2 addresses)" in result.output
    assert sorted(r["email"] for r in _rows(run("suppressions", "export").stdout)) == [
        "Ann@Example.org",
        "Zoë@Bücher.example",
    ]
    again = run("suppressions", "import", crm)
    assert "imported crm.csv: 0 new, 2 already suppressed (2 addresses)" in again.output
