"""`newsletter preview`: the server over HTTP, and the page in a real Chromium."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from newsletter.preview import Preview, Server

from .support import SEED, cli_command, cli_env, write_list

ISSUE = f"issues/{SEED}.yaml"
TITLE = "Crisis and Tactical Round Up: Spring Solidarity"


def get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode("utf-8")


def state(server: Server) -> dict:
    return json.loads(get(server.url + "state.json")[1])


def wait_for(condition, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def server(project):
    server = Server(Preview(project / ISSUE), port=0)
    server.start()
    yield server
    server.stop()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- over HTTP ----------------------------------------------------------------


def test_serves_only_on_this_machine_by_default(server):
    assert server.http.server_address[0] == "127.0.0.1"


# An issue of the tests' own with a known number of warnings: two placeholder links and no preheader (and the
# project's reply_to on another domain than from).
WARNED = """\
id: warned
title: "A roundup with warnings"
date: 2021-05-03
items:
  - status: new
    title: "An action"
    body: "Read [the report](https://example.org/report) first."
    actions:
      - "Do a thing."
    links:
      - {text: "Sign", url: "https://example.com/sign"}
"""


@pytest.fixture
def warned(project):
    """A preview of WARNED, served on 127.0.0.1."""
    (project / "issues" / "warned.yaml").write_text(WARNED, encoding="utf-8")
    server = Server(Preview(project / "issues" / "warned.yaml"), port=0)
    server.start()
    yield server
    server.stop()


def test_page_state_and_email(warned):
    kind, page = get(warned.url)
    assert kind.startswith("text/html")
    # Works offline: nothing is loaded from another site.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page
    found = state(warned)
    assert found["subject"] == "A roundup with warnings"
    assert found["from"] == "Amnesty Crisis and Tactical Team <roundup@example.org>"
    assert found["preheader"] == ""
    assert 0 < found["html_bytes"] < found["clip_bytes"] == 102 * 1024
    assert found["warnings"] == [
        "issues/warned.yaml:2:8: title: no preheader: inboxes will show the first words of the body instead",
        "issues/warned.yaml:7:11: items[0].body: placeholder link https://example.org/report: put the real address",
        "issues/warned.yaml:11:29: items[0].links[0].url: "
        "placeholder link https://example.com/sign: put the real address",
        "newsletter.yaml:8:11: reply_to: reply_to hhomes@amnesty.ca is on another domain than from "
        "(roundup@example.org): rspamd adds 6 points (SPOOF_REPLYTO), half-way to spam, to every copy sent to an "
        "address at example.org; reply to an address at example.org, or send from amnesty.ca",
    ]
    assert not found["errors"]
    assert "WHAT YOU CAN DO" in found["text"]
    kind, email = get(warned.url + "email.html")
    assert kind.startswith("text/html") and "A roundup with warnings" in email and "Hi there," in email


def test_preview_as_a_subscriber(project):
    subscribers = write_list(project, ["email,name", "ann@example.com,Ann"])
    server = Server(Preview(project / ISSUE, "ANN@example.com", subscribers), port=0)
    server.start()
    try:
        email = get(server.url + "email.html")[1]
        assert "Hi Ann," in email
        assert "unsubscribe?t=YW5uQGV4YW1wbGUuY29t" in email  # her own token
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("file", "old", "new", "seen"),
    [
        (ISSUE, f'title: "{TITLE}"', 'title: "Edited on disk"', "Edited on disk"),
        ("newsletter.yaml", "organisation: Amnesty International Canada", "organisation: Renamed Org", "Renamed Org"),
        ("templates/email.mjml.j2", "<p>Hi {{", "<p>Greetings and hi {{", "Greetings and hi"),
    ],
)
def test_saving_any_source_file_rebuilds(project, server, file, old, new, seen):
    before = state(server)["version"]
    edit(project / file, old, new)
    wait_for(lambda: seen in get(server.url + "email.html")[1], timeout=3)
    assert state(server)["version"] > before


def test_a_broken_edit_shows_its_error_and_the_server_keeps_running(project, server):
    path = project / ISSUE
    good = path.read_text(encoding="utf-8")
    path.write_text(good + "extra: [unclosed\n", encoding="utf-8")
    # An editor may save in two steps (empty, then full); wait for the final word.
    errors = wait_for(lambda: [e for e in state(server)["errors"] if "never closed" in e])
    line = good.count("\n") + 1
    assert errors == [
        f"{ISSUE}:{line}:8: invalid YAML: this bracket is never closed (did not find expected ',' or ']')"
    ]
    assert TITLE in get(server.url + "email.html")[1]  # the last good version stays
    path.write_text(good, encoding="utf-8")
    wait_for(lambda: not state(server)["errors"])


def test_cli_picks_a_free_port_and_stops_cleanly_on_ctrl_c(project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = cli_command("preview", ISSUE, "--no-open", "--port", port)
        process = subprocess.Popen(
            command, cwd=project, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        from .timed_lines import TimedLines

        output = TimedLines(process.stdout)  # each line waited for with a deadline, never forever
        try:
            lines = [output.next(timeout=30) for _ in range(2)]
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            finally:
                process.kill()  # if Ctrl-C did not stop it: the test fails, the suite goes on
            output = output.rest(timeout=10)
            process.stdout.close()
    assert f"port {port} is in use; using" in lines[0]
    url = re.search(r"at (http://127\.0\.0\.1:\d+/)", lines[1]).group(1)
    assert f":{port}/" not in url
    assert process.returncode == 0, output
    assert "Traceback" not in output and "stopping" in output


# -- in a real browser --------------------------------------------------------


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright's own download cannot work here


def launch_chromium(playwright, executable: Path = CHROMIUM, extra_args: list[str] | None = None):
    """Chromium at `executable`, or a failed test saying how to install it (a skip would hide a broken promise)."""
    from playwright.sync_api import Error

    if not os.access(executable, os.X_OK):
        pytest.fail(
            f"the browser tests need Chromium at {executable}, and it is not there; "
            "install it with: apt-get update && apt-get install -y chromium (as root, as .ci/run does)",
            pytrace=False,
        )
    try:
        return playwright.chromium.launch(
            executable_path=str(executable),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", *(extra_args or [])],
        )
    except Error as exc:
        pytest.fail(f"Chromium at {executable} did not start: {exc.message}", pytrace=False)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def test_without_chromium_the_browser_tests_fail_saying_how_to_install_it(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, pytest.raises(pytest.fail.Exception) as failed:
        launch_chromium(playwright, tmp_path / "chromium")
    assert "apt-get install -y chromium" in str(failed.value)


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url)
    page.wait_for_function("() => document.getElementById('subject').textContent.length > 0")
    yield page
    page.close()


def email_frame(page, frame_id: str):
    page.wait_for_function(f"() => document.getElementById('{frame_id}').contentDocument?.title.length > 0")
    return page.frame_locator(f"#{frame_id}")


def test_phone_frame_is_375_wide_with_no_horizontal_scroll(page):
    email_frame(page, "phone")
    inner = page.evaluate(
        """() => { const w = document.getElementById('phone').contentWindow;
                  return [w.innerWidth, w.document.documentElement.scrollWidth]; }"""
    )
    assert inner == [375, 375]
    desktop = page.evaluate("document.getElementById('desktop').contentWindow.innerWidth")
    assert desktop >= 600
    # The same email, laid out for each width: the phone stacks to one narrow column.
    width = "(id) => document.getElementById(id).contentDocument.querySelector('h2').getBoundingClientRect().width"
    assert page.evaluate(width, "phone") < page.evaluate(width, "desktop")


def test_plain_text_inbox_line_and_warnings_are_shown(browser, warned):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(warned.url)
        page.wait_for_function("() => document.getElementById('subject').textContent.length > 0")
        assert "WHAT YOU CAN DO" in page.inner_text("#text")
        assert page.inner_text("#subject") == "A roundup with warnings"
        assert page.inner_text("#from") == "Amnesty Crisis and Tactical Team <roundup@example.org>"
        assert page.inner_text("#warnings summary") == "4 warnings"
        assert "placeholder link https://example.com/sign" in page.text_content("#warnings")
        assert "no preheader" in page.text_content("#warnings")
        assert re.search(r"HTML \d+\.\d KB of Gmail's 102\.0 KB clipping limit", page.inner_text("#size"))
    finally:
        page.close()


def test_page_follows_edits_without_reloading(project, page):
    page.evaluate("window.stillTheSamePage = true")
    path = project / ISSUE
    good = path.read_text(encoding="utf-8")

    edit(path, f'title: "{TITLE}"', 'title: "A brand new title"')
    page.wait_for_function("() => document.getElementById('subject').textContent === 'A brand new title'", timeout=5000)
    email_frame(page, "phone")
    page.wait_for_function(
        "() => document.getElementById('phone').contentDocument?.body?.innerText.includes('A brand new title')",
        timeout=5000,
    )

    path.write_text(good.replace("items:\n", "items:\n  - [broken\n", 1), encoding="utf-8")
    page.wait_for_selector("#errors li.error:has-text('never closed')", timeout=5000)
    error = page.inner_text("#errors li.error")
    line = good.split("\n").index("items:") + 2
    assert f"{ISSUE}:{line}:" in error and "never closed" in error

    path.write_text(good, encoding="utf-8")
    page.wait_for_function("() => !document.getElementById('errors')", timeout=5000)
    page.wait_for_function(
        f"() => document.getElementById('phone').contentDocument?.body?.innerText.includes({TITLE!r})", timeout=5000
    )
    assert page.evaluate("window.stillTheSamePage") is True


def test_a_broken_site_file_at_start_still_reloads_once_fixed(project):
    site = project / "newsletter.yaml"
    good = site.read_text(encoding="utf-8")
    site.write_text(good.replace("organisation:", "organisation: [", 1), encoding="utf-8")
    server = Server(Preview(project / ISSUE), port=0)
    server.start()
    try:
        assert any("newsletter.yaml" in e for e in state(server)["errors"])
        assert not state(server)["has_email"]
        site.write_text(good, encoding="utf-8")
        wait_for(lambda: state(server)["has_email"] and not state(server)["errors"])
    finally:
        server.stop()


def test_answers_only_to_its_own_address(server):
    request = urllib.request.Request(server.url + "state.json", headers={"Host": f"attacker.example:{server.port}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 421
    request = urllib.request.Request(server.url + "state.json", headers={"Host": f"localhost:{server.port}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_an_unknown_host_is_a_message(project, run):
    result = run("preview", ISSUE, "--no-open", "--host", "no-such-host.invalid")
    assert result.exit_code == 1
    assert "cannot serve on no-such-host.invalid:8000" in result.output


@pytest.mark.parametrize("width", [320, 375, 480, 600])
def test_the_email_fits_every_width_from_320_to_600(browser, server, width):
    page = browser.new_page(viewport={"width": width, "height": 800})
    try:
        page.goto(server.url + "email.html")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        # Text stays readable at every width: nothing below the footer's 13 px.
        sizes = page.evaluate(
            "() => [...document.querySelectorAll('p, li')].map(e => parseFloat(getComputedStyle(e).fontSize))"
        )
        assert sizes and min(sizes) >= 13
    finally:
        page.close()
