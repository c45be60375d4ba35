"""`newsletter serve`: the real server in its own process on 127.0.0.1, talked to over HTTP (and by Chromium).

The project's unsubscribe and archive URLs are on news.test; requests reach the server on 127.0.0.1
with that Host header, as the organisation's TLS proxy would pass it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import lxml.html
import pytest

from newsletter import public
from newsletter.project import open_project
from newsletter.suppressions import SuppressionStore, Why
from newsletter.unsubscribe import export_key, make_token

from .smtp_server import free_port
from .support import MINIMAL, SECRET, SEED, cli_command, cli_env, run_cli, write_issue, write_list

HOST = "news.test"
LIST_ID = "roundup.example.org"
ISSUE = f"issues/{SEED}.yaml"
REPLY_TO = "hhomes@amnesty.ca"


def on_news_test(root: Path) -> None:
    site = root / "newsletter.yaml"
    text = site.read_text(encoding="utf-8")
    text = text.replace("https://example.org/roundup/", f"http://{HOST}/roundup/")
    text = text.replace("https://example.org/unsubscribe?t={token}", f"http://{HOST}/unsubscribe?t={{token}}")
    assert HOST in text
    site.write_text(text, encoding="utf-8")


class Served:
    """`newsletter serve` in its own process: its port, its output, and a client that sends the public Host."""

    def __init__(self, root: Path, secret: str = SECRET, *options: object) -> None:
        self.root = root
        self.port = free_port()
        self.log = root / f"serve-{self.port}.log"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(
            cli_command("serve", "--port", self.port, *options),
            cwd=root,
            env=cli_env(NEWSLETTER_SECRET=secret),
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.base, headers={"Host": HOST}, timeout=10)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"serve did not start:\n{self.output()}") from None
                time.sleep(0.05)

    def stop(self) -> str:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._out.close()
        return self.output()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def raw(self, request: bytes) -> bytes:
        """Send `request` as it is and read the whole answer (the server closes after it)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            conn.sendall(request)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            return answer


@pytest.fixture
def served(project):
    on_news_test(project)
    server = Served(project)
    yield server
    server.stop()


def token(email: str, secret: str = SECRET, list_id: str = LIST_ID) -> str:
    return make_token(secret, list_id, email)


def stored(root: Path) -> dict[str, Why]:
    with SuppressionStore.open(root) as store:
        return {row.email: row.why for row in store.rows()}


ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


# -- one click ------------------------------------------------------------------------


def test_one_click_post_exactly_as_rfc_8058_shows_it_unsubscribes(served, project):
    target = f"/unsubscribe?t={token('ann@example.com')}"
    # RFC 8058 section 3.2, byte for byte but for the path and host; Connection: close to read to the end.
    request = (
        f"POST {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 26\r\nConnection: close\r\n\r\nList-Unsubscribe=One-Click"
    ).encode()
    answer = served.raw(request)
    head = answer.partition(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 200")
    assert "location:" not in head and "set-cookie:" not in head
    assert stored(project) == {"ann@example.com": Why.ONE_CLICK}

    # A repeat (a mail client retrying, a scanner) is harmless and leaves the first record.
    again = served.raw(request)
    assert again.startswith(b"HTTP/1.1 200")
    with SuppressionStore.open(project) as store:
        assert len(list(store.rows())) == 1


def test_one_click_as_multipart_form_data_also_unsubscribes(served, project):
    answer = served.client.post(
        f"/unsubscribe?t={token('bo@example.com')}", files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert answer.status_code == 200
    assert stored(project) == {"bo@example.com": Why.ONE_CLICK}


@pytest.mark.parametrize(
    "body",
    [
        b"List-Unsubscribe=One-Click\r\n",  # RFC 8058 clients vary in what follows the one field
        b"List-Unsubscribe=One-Click\n",
        b"List-Unsubscribe=One-Click ",
        b"List-Unsubscribe=One-Click&utm=x",
        b"a=1&List-Unsubscribe=One-Click&b=2",
    ],
)
def test_one_click_bodies_as_clients_send_them_unsubscribe(served, project, body):
    answer = served.client.post(f"/unsubscribe?t={token('di@example.com')}", content=body, headers=ONE_CLICK)
    assert answer.status_code == 200
    assert stored(project) == {"di@example.com": Why.ONE_CLICK}


def test_a_get_shows_the_page_and_never_unsubscribes(served, project):
    url = f"/unsubscribe?t={token('Ann@Example.com')}"
    page = served.client.get(url)
    assert served.client.head(url).status_code == 200
    assert page.status_code == 200
    assert "ann@example.com" in page.text and LIST_ID in page.text
    forms = lxml.html.fromstring(page.text).xpath("//form")
    assert len(forms) == 1 and forms[0].get("method") == "post"
    assert len(forms[0].xpath(".//button")) == 1
    assert stored(project) == {}


def test_the_page_button_then_undo_resubscribes(served, project):
    url = f"/unsubscribe?t={token('cy@example.com')}"
    done = served.client.post(url, data={"action": "unsubscribe"})
    assert done.status_code == 200
    assert stored(project) == {"cy@example.com": Why.PAGE}
    undo = lxml.html.fromstring(done.text).xpath("//input[@name='undo']/@value")
    assert len(undo) == 1

    # An undo key is for that address only, and unchanged.
    other = served.client.post(f"/unsubscribe?t={token('di@example.com')}", data={"action": "undo", "undo": undo[0]})
    assert other.status_code == 400
    forged = served.client.post(url, data={"action": "undo", "undo": undo[0][:-2] + "AA"})
    assert forged.status_code == 400
    assert stored(project) == {"cy@example.com": Why.PAGE}

    undone = served.client.post(url, data={"action": "undo", "undo": undo[0]})
    assert undone.status_code == 200
    assert "subscribed" in undone.text
    assert stored(project) == {}


def test_undo_never_removes_a_suppression_the_page_did_not_record(served, project):
    url = f"/unsubscribe?t={token('ed@example.com')}"
    undo = lxml.html.fromstring(served.client.post(url, data={"action": "unsubscribe"}).text).xpath(
        "//input[@name='undo']/@value"
    )[0]
    with SuppressionStore.open(project) as store:  # then a bounce replaced it, say
        store.remove("ed@example.com")
        store.add("ed@example.com", Why.BOUNCE)
    assert served.client.post(url, data={"action": "undo", "undo": undo}).status_code == 400
    assert stored(project) == {"ed@example.com": Why.BOUNCE}


def _undo_key(page: str) -> str:
    (key,) = lxml.html.fromstring(page).xpath("//input[@name='undo']/@value")
    return key


def test_undo_keeps_a_manual_record_made_after_the_page_unsubscribe(served, project):
    # The page unsubscribes ann; then the team records her by hand (she wrote in, say). Her undo must not
    # take back the team's record.
    url = f"/unsubscribe?t={token('ann@example.com')}"
    undo = _undo_key(served.client.post(url, data={"action": "unsubscribe"}).text)
    added = run_cli(project, "suppressions", "add", "ann@example.com")
    assert added.returncode == 0, added.stderr
    assert served.client.post(url, data={"action": "undo", "undo": undo}).status_code == 400
    assert stored(project) == {"ann@example.com": Why.MANUAL}


def test_undo_keeps_a_bounce_recorded_after_the_page_unsubscribe(served, project):
    url = f"/unsubscribe?t={token('bo@example.com')}"
    undo = _undo_key(served.client.post(url, data={"action": "unsubscribe"}).text)
    with SuppressionStore.open(project) as store:  # `inbox` reads a hard bounce for her
        store.add("bo@example.com", Why.BOUNCE, evidence={"status": "5.1.1"})
    assert served.client.post(url, data={"action": "undo", "undo": undo}).status_code == 400
    assert stored(project) == {"bo@example.com": Why.BOUNCE}


def test_the_page_offers_no_undo_for_a_suppression_recorded_before_it(served, project):
    with SuppressionStore.open(project) as store:
        store.add("cy@example.com", Why.BOUNCE)
    done = served.client.post(f"/unsubscribe?t={token('cy@example.com')}", data={"action": "unsubscribe"})
    assert done.status_code == 200
    assert lxml.html.fromstring(done.text).xpath("//input[@name='undo']") == []
    assert stored(project) == {"cy@example.com": Why.BOUNCE}


# -- what is refused ----------------------------------------------------------------------

GOOD = token("ann@example.com")
BAD_TOKENS = {
    "forged": token("ann@example.com", secret="another-key-entirely-9Fq2LzX81pWm0cVb"),
    "truncated": GOOD[:-3],
    "another list": token("ann@example.com", list_id="other.example.org"),
    "empty": "",
    "payload only": GOOD.partition(".")[0],
}


@pytest.mark.parametrize("name", BAD_TOKENS)
def test_an_invalid_token_gets_a_400_page_saying_what_to_do_and_records_nothing(served, project, name):
    url = f"/unsubscribe?t={BAD_TOKENS[name]}"
    for answer in (
        served.client.get(url),
        served.client.post(url, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK),
        served.client.post(url, data={"action": "unsubscribe"}),
    ):
        assert answer.status_code == 400
        assert "not valid" in answer.text and REPLY_TO in answer.text
    assert stored(project) == {}


def test_a_foreign_host_is_refused_and_records_nothing(served, project):
    url = f"/unsubscribe?t={GOOD}"
    for host in ("evil.example", f"127.0.0.1:{served.port}", "news.test.evil.example"):
        answer = served.client.post(url, content=b"List-Unsubscribe=One-Click", headers={**ONE_CLICK, "Host": host})
        assert 400 <= answer.status_code < 500
        assert served.client.get("/roundup/", headers={"Host": host}).status_code == 400
    assert stored(project) == {}


def asgi_post(app, target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """POST to `app` in this process, with `headers` exactly as given (no HTTP parser in between); status and body."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", HOST.encode()), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    given = False
    answer: dict[str, object] = {"body": b""}

    async def receive():
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return answer["status"], answer["body"]


# "\xb2\xb3" is "²³" in Latin-1, which HTTP headers are read in: digits to str.isdigit, not to int().
@pytest.mark.parametrize("length", [b"abc", b"-1", b"0x1a", b"\xb2\xb3", b"1e3", b"2\xb3", b"26 "])
def test_a_content_length_that_is_not_a_number_is_a_bad_request_not_too_large(project, length):
    # uvicorn's parser refuses most of these itself; the app must too, behind a server (or proxy) that does not.
    on_news_test(project)
    app = public.make_app(open_project(project), SECRET)
    headers = [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", length)]
    status, body = asgi_post(app, f"/unsubscribe?t={GOOD}", headers, b"List-Unsubscribe=One-Click")
    assert status == 400, body[:300]
    assert b"Content-Length" in body
    assert stored(project) == {}


def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_running(served, project):
    url = f"/unsubscribe?t={GOOD}"
    client = served.client
    assert client.post(url, content=b"List-Unsubscribe=Two-Click", headers=ONE_CLICK).status_code == 400
    assert client.post(url, content=b"").status_code == 415
    assert (
        client.post(url, content=b"List-Unsubscribe=One-Click", headers={"Content-Type": "text/plain"}).status_code
        == 415
    )
    assert client.post(url, content=b"x" * 2_000_000, headers=ONE_CLICK).status_code == 413
    assert client.post(url, content=b"&".join([b"a=b"] * 100), headers=ONE_CLICK).status_code == 400
    assert client.post(url, files={"List-Unsubscribe": ("f.txt", b"One-Click")}).status_code in (400, 413)
    assert 400 <= client.get("/unsubscribe?t=" + "A" * 20_000).status_code < 500
    assert client.get("/unsubscribe?t=%FF%FE%00").status_code == 400
    assert client.put(url).status_code == 405
    assert client.get("/nowhere").status_code == 404
    assert client.get("/unsubscribe?t=a&t=" + GOOD).status_code == 400
    # A body that never comes in full: the server answers the others meanwhile.
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as slow:
        slow.sendall(f"POST {url} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 26\r\n\r\nList".encode())
        assert client.get(url).status_code == 200
    # Not UTF-8, sent as raw bytes in the query.
    raw = served.raw(b"GET /unsubscribe?t=\xff\xfe HTTP/1.1\r\nHost: news.test\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 4")
    assert stored(project) == {}
    assert client.get(url).status_code == 200
    output = served.stop()
    assert "Traceback" not in output and "Exception" not in output


def test_a_damaged_suppression_store_gets_the_apps_own_500_page_and_one_log_line(served, project):
    (project / "state").mkdir(exist_ok=True)
    (project / "state" / "suppressions.sqlite3").write_bytes(os.urandom(4096))
    url = f"/unsubscribe?t={token('cy@example.com')}"
    answer = served.client.post(url, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert answer.status_code == 500  # not recorded: the mail client may try again
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert "Nothing was changed" in answer.text and REPLY_TO in answer.text
    assert served.client.get(url).status_code == 200  # still running
    output = served.stop()
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "suppressions.sqlite3" in line]
    assert "cannot" in line and "cy@example.com" not in output


@pytest.mark.parametrize(
    "target",
    [
        "/roundup/../newsletter.yaml",
        "/roundup/%2e%2e/newsletter.yaml",
        "/roundup/..%2fnewsletter.yaml",
        "/roundup//etc/passwd",
        "/roundup/%5c..%5cnewsletter.yaml",
        "/roundup/./",
        "/roundup/nothing-here/",
    ],
)
def test_nothing_outside_the_archive_and_no_listing(served, target):
    answer = served.raw(f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
    assert b"smtp:" not in answer


def test_the_archive_is_served_under_its_url(served):
    index = served.client.get("/roundup/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    moved = served.client.get("/roundup")
    assert moved.status_code == 308 and moved.headers["location"] == "/roundup/"
    assert served.client.post("/roundup/").status_code == 405


def test_an_issue_and_its_share_pages_are_found_at_their_own_address_not_anothers(served, project):
    # "a%20b" is linked as a%2520b/, which serve is handed decoded, as "a%20b/": the other issue's link.
    for n, identity in enumerate(["a b", "a%20b"]):
        issue = MINIMAL.replace('"A roundup"', f'"Issue {n}"') + '    sample_posts: ["A post"]\n'
        write_issue(project, f'id: "{identity}"\npublished: true\n' + issue, f"i{n}.yaml")
    index = lxml.html.fromstring(served.client.get("/roundup/").text)
    links = {a.text_content(): a.get("href") for a in index.iter("a") if a.text_content().startswith("Issue")}
    assert links == {"Issue 0": "a%20b/", "Issue 1": "a%2520b/"}
    for title, href in links.items():
        page = served.client.get(f"/roundup/{href}")
        assert page.status_code == 200 and f"<title>{title}" in page.text
        share = served.client.get(f"/roundup/{href}share/1-1.html")
        assert share.status_code == 200 and f'from <a href="../">{title}</a>' in share.text


def test_archive_refreshes_never_pile_up_while_one_is_slow(project, monkeypatch):
    # In this process, so that a look at the files can be held: while one is under way (a slow disk, a big
    # render), the other requests answer from what was built, and start no look of their own.
    on_news_test(project)
    monkeypatch.setattr(public, "ARCHIVE_REFRESH", 0.0)  # every request would look, were one not under way
    app = public.Public(open_project(project), SECRET)
    assert app.archive is not None
    looking = 0
    most = 0
    blocking = False
    entered, release = threading.Event(), threading.Event()
    real = app.archive.pages

    def slow_pages():
        nonlocal looking, most
        looking += 1
        most = max(most, looking)
        try:
            if blocking:
                entered.set()
                release.wait(timeout=20)
            return real()
        finally:
            looking -= 1

    async def until(event: threading.Event) -> None:
        while not event.is_set():
            await asyncio.sleep(0.01)

    async def scenario() -> list[int]:
        nonlocal blocking
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
            assert (await client.get("/roundup/")).status_code == 200  # the first look, which builds the pages
            blocking = True
            first = asyncio.ensure_future(client.get("/roundup/"))
            await asyncio.wait_for(until(entered), timeout=10)  # its look is under way, and held
            others = await asyncio.wait_for(asyncio.gather(*(client.get("/roundup/") for _ in range(20))), timeout=10)
            release.set()
            return [answer.status_code for answer in (*others, await first)]

    monkeypatch.setattr(app.archive, "pages", slow_pages)
    try:
        statuses = asyncio.run(scenario())
    finally:
        release.set()
    assert statuses == [200] * 21
    assert most == 1


def test_security_headers_and_the_style_is_allowed_by_its_hash(served):
    page = served.client.get(f"/unsubscribe?t={GOOD}")
    csp = page.headers["content-security-policy"]
    for rule in ("default-src 'none'", "form-action 'self'", "frame-ancestors 'none'"):
        assert rule in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    (style,) = re.findall(r"<style>(.*?)</style>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    for answer in (served.client.get("/nowhere"), served.client.get("/roundup/")):
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_log_never_holds_a_token_or_an_address(served):
    secret_address = "zoe.private@example.com"
    valid = token(secret_address)
    served.client.get(f"/unsubscribe?t={valid}")
    served.client.post(f"/unsubscribe?t={valid}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    served.client.get(f"/unsubscribe?t={valid[:-1]}")
    served.client.get(f"/unsubscribe/{valid}")
    output = served.stop()
    assert "POST /unsubscribe?… 200" in output  # the server did log the requests
    payload = valid.partition(".")[0]
    assert payload[:12] not in output and secret_address not in output


def test_a_token_in_the_path_works_and_is_kept_out_of_the_log(project):
    on_news_test(project)
    site = project / "newsletter.yaml"
    site.write_text(site.read_text().replace("/unsubscribe?t={token}", "/u/{token}"), encoding="utf-8")
    server = Served(project)
    try:
        url = f"/u/{token('fay@example.com')}"
        assert server.client.get(url).status_code == 200
        assert server.client.post(url, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK).status_code == 200
        assert server.client.get("/u/garbage").status_code == 400
        key = export_key(SECRET)
        assert server.client.get("/u/suppressions.csv", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        output = server.stop()
    assert stored(project) == {"fay@example.com": Why.ONE_CLICK}
    assert "fay@" not in output and token("fay@example.com")[:10] not in output and "garbage" not in output
    assert "POST /u/… 200" in output


# -- the export -------------------------------------------------------------------------


def test_the_export_answers_the_store_for_the_key_only(served, project):
    with SuppressionStore.open(project) as store:
        store.add("old@example.com", Why.IMPORT, at=1_600_000_000)
        store.add("new@example.com", Why.ONE_CLICK, issue="spring", at=1_700_000_000)
    key = export_key(SECRET)
    answer = served.client.get("/unsubscribe/suppressions.csv", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.text.splitlines() == [
        "email,when,why,issue",
        "old@example.com,2020-09-13T12:26:40Z,import,",
        "new@example.com,2023-11-14T22:13:20Z,one-click,spring",
    ]
    since = served.client.get(
        "/unsubscribe/suppressions.csv?since=2021-01-01T00:00:00Z", headers={"Authorization": f"Bearer {key}"}
    )
    assert since.text.splitlines()[1:] == ["new@example.com,2023-11-14T22:13:20Z,one-click,spring"]
    for given in (
        {},
        {"Authorization": "Bearer " + key[:-1] + "0"},
        {"Authorization": key},
        {"Authorization": b"Bearer \xe9"},
    ):
        refused = served.client.get("/unsubscribe/suppressions.csv", headers=given)
        assert refused.status_code == 401 and "old@example.com" not in refused.text
    bad_since = served.client.get(
        "/unsubscribe/suppressions.csv?since=soon", headers={"Authorization": f"Bearer {key}"}
    )
    assert bad_since.status_code == 400


# -- starting ---------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "password123"])
def test_serve_refuses_to_start_without_a_strong_secret(project, secret):
    env = {} if secret is None else {"NEWSLETTER_SECRET": secret}
    result = run_cli(project, "serve", "--port", free_port(), env=env, timeout=30) if secret else None
    if secret is None:
        environment = cli_env()
        environment.pop("NEWSLETTER_SECRET", None)
        result = subprocess.run(
            cli_command("serve", "--port", free_port()),
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "NEWSLETTER_SECRET" in result.stderr and "Traceback" not in result.stderr


def test_serve_starts_with_a_key_that_is_not_utf8_and_its_export_key_works(project):
    # os.environ hands bytes that are not UTF-8 over as lone surrogates; secret_problem accepts such a key.
    key = os.fsdecode(b"\xff" + SECRET.encode())
    on_news_test(project)
    server = Served(project, key)
    try:
        answer = server.client.get(
            "/unsubscribe/suppressions.csv", headers={"Authorization": f"Bearer {export_key(key)}"}
        )
        assert answer.status_code == 200 and answer.text.startswith("email,when,why,issue")
        assert server.client.get(f"/unsubscribe?t={token('ann@example.com', secret=key)}").status_code == 200
    finally:
        output = server.stop()
    assert "Traceback" not in output
    assert "warning" not in output  # on 127.0.0.1: nothing to warn of


def test_serve_warns_when_it_listens_beyond_this_machine(project):
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails, after the warning, and nothing is
    # reached over a network.
    result = run_cli(
        project, "serve", "--host", "192.0.2.1", "--port", free_port(), env={"NEWSLETTER_SECRET": SECRET}, timeout=30
    )
    assert "warning: serving on 192.0.2.1" in result.stderr and "plain HTTP" in result.stderr
    assert result.returncode != 0 and "Traceback" not in result.stderr


# -- two servers, one store ----------------------------------------------------------------


def test_two_servers_on_one_store_lose_and_duplicate_nothing(served, project):
    second = Served(project)
    try:
        addresses = [f"reader{i}@example.com" for i in range(120)]
        failures: list[object] = []

        def click(some: list[str]) -> None:
            with (
                httpx.Client(base_url=served.base, headers={"Host": HOST}, timeout=30) as one,
                httpx.Client(base_url=second.base, headers={"Host": HOST}, timeout=30) as two,
            ):
                for i, address in enumerate(some):
                    for client in (one, two) if i % 2 else (two, one):  # both, in turn first
                        answer = client.post(
                            f"/unsubscribe?t={token(address)}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
                        )
                        if answer.status_code != 200:
                            failures.append(answer.status_code)

        threads = [threading.Thread(target=click, args=(addresses[i::6],)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        with SuppressionStore.open(project) as store:
            rows = list(store.rows())
        assert sorted(row.email for row in rows) == sorted(addresses)
    finally:
        second.stop()


# -- end to end: a send, its links, the next send ---------------------------------------------


LINK = re.compile(r"<(https?://[^>]+)>")


def test_a_send_after_one_click_unsubscribes_skips_those_addresses(served, project, run, smtp_server, inbox):
    readers = ["ann@example.com", "bo@example.com", "cy@example.com", "stays@example.com"]
    subscribers = write_list(project, ["email", *readers])
    assert run("send", ISSUE, "--to", subscribers, "--yes").exit_code == 0
    assert set(inbox.recipients()) == set(readers)

    for address in readers[:3]:
        (url,) = [u for u in LINK.findall(inbox.by_recipient(address)["List-Unsubscribe"]) if u.startswith("http")]
        parts = httpx.URL(url)
        answer = served.client.post(
            parts.raw_path.decode(), content=b"List-Unsubscribe=One-Click", headers={**ONE_CLICK, "Host": parts.host}
        )
        assert answer.status_code == 200

    inbox.envelopes.clear()
    inbox.messages.clear()
    following = write_issue(project, "id: 2021-06-next\n" + MINIMAL, "next.yaml")
    result = run("send", following, "--to", subscribers, "--yes")
    assert result.exit_code == 0, result.output
    assert set(inbox.recipients()) == {"stays@example.com"}


def test_an_unsubscribe_records_the_issue_whose_link_it_came_from(served, project, run, smtp_server, inbox):
    readers = ["ann@example.com", "bo@example.com"]
    assert run("send", ISSUE, "--to", write_list(project, ["email", *readers]), "--yes").exit_code == 0
    for address in readers:
        (url,) = [u for u in LINK.findall(inbox.by_recipient(address)["List-Unsubscribe"]) if u.startswith("http")]
        path = httpx.URL(url).raw_path.decode()
        if address == "ann@example.com":
            answer = served.client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        else:
            answer = served.client.post(path, data={"action": "unsubscribe"})  # the page's button
        assert answer.status_code == 200
    with SuppressionStore.open(project) as store:
        rows = {row.email: (row.why, row.issue) for row in store.rows()}
    assert rows == {"ann@example.com": (Why.ONE_CLICK, SEED), "bo@example.com": (Why.PAGE, SEED)}
    # A link from before tokens carried the issue still unsubscribes; the issue is then not known.
    old = served.client.post(
        f"/unsubscribe?t={token('cy@example.com')}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert old.status_code == 200
    with SuppressionStore.open(project) as store:
        assert store.get("cy@example.com").issue is None


def test_view_in_your_browser_opens_the_web_version_without_personal_data(served, project, run, smtp_server, inbox):
    before = served.client.get("/roundup/")
    assert before.status_code == 200 and "Spring Solidarity" not in before.text  # not sent yet: not published
    assert (
        run("send", ISSUE, "--to", write_list(project, ["email,name", "gil@example.com,Gil"]), "--yes").exit_code == 0
    )
    message = inbox.by_recipient("gil@example.com")
    html = message.get_body(("html",)).get_content()
    (link,) = {a.get("href") for a in lxml.html.fromstring(html).iter("a") if "browser" in a.text_content().lower()}
    assert link == f"http://{HOST}/roundup/{SEED}/" and link in message.get_body(("plain",)).get_content()
    time.sleep(public.ARCHIVE_REFRESH)  # the archive looks at the ledger at most this often
    page = served.client.get(httpx.URL(link).path)
    assert page.status_code == 200, page.text
    assert "Crisis and Tactical Round Up: Spring Solidarity" in page.text
    assert "gil@example.com" not in page.text and "Gilberta" not in page.text
    assert token("gil@example.com") not in page.text and "?t=" not in page.text
    assert f'{SEED}/"' in served.client.get("/roundup/").text  # now published: the index links to it


# -- in a real browser -------------------------------------------------------------------------


def test_the_page_flow_in_chromium(served, project, run, smtp_server, inbox):
    from playwright.sync_api import sync_playwright

    from .test_preview import launch_chromium

    assert run("send", ISSUE, "--to", write_list(project, ["email", "gil@example.com"]), "--yes").exit_code == 0
    (url,) = [u for u in LINK.findall(inbox.by_recipient("gil@example.com")["List-Unsubscribe"]) if "://" in u]
    assert url.startswith(f"http://{HOST}/")

    rules = f"--host-resolver-rules=MAP {HOST} 127.0.0.1:{served.port}"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, extra_args=[rules, "--disable-features=HttpsUpgrades"])
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.goto(url)
            assert "gil@example.com" in page.text_content("main")
            assert stored(project) == {}
            # The stylesheet applies (the CSP's hash matched it): the button wears the theme's primary colour.
            background = page.get_by_role("button", name="Unsubscribe").evaluate(
                "b => getComputedStyle(b).backgroundColor"
            )
            assert background == "rgb(26, 26, 26)"
            page.get_by_role("button", name="Unsubscribe").click()
            page.get_by_role("heading", name="You are unsubscribed").wait_for(timeout=10_000)
            assert stored(project) == {"gil@example.com": Why.PAGE}
            page.get_by_role("button", name="Subscribe me again").click()
            page.get_by_role("heading", name="You are subscribed again").wait_for(timeout=10_000)
            assert stored(project) == {}
            assert problems == []  # no CSP violation, nothing else
        finally:
            browser.close()
