"""`newsletter inbox` over IMAP, against a real Dovecot on 127.0.0.1 (tests/dovecot.py).

The same decisions as from a Maildir (test_inbox.py), read from an IMAP folder: what is recognised moves to
the processed folder, unread still; the rest stays where it was, unread; and when the server refuses, hangs up
or cannot be trusted, one clear line, nothing lost, and the next run carries on.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter import imap
from newsletter.connection import ConnectFailed
from newsletter.inbox import READ_LIMIT, Summary
from newsletter.suppressions import SuppressionStore, Why
from newsletter.unsubscribe import make_token

from .bounces import DATA, ISSUE, bounce_for, send_seed
from .dovecot import Account, Dovecot, Stored
from .smtp_server import free_port
from .support import SECRET, SEED, cli_watching, write_list
from .tcp_proxy import CuttingProxy

HUMAN_ID = "<human.1@example.org>"  # tests/data/bounces/human-reply.eml


def _configure(project: Path, **inbox: object) -> None:
    """An `inbox:` section in newsletter.yaml, as a user would write it."""
    lines = "".join(f"  {key}: {value}\n" for key, value in inbox.items())
    site = project / "newsletter.yaml"
    site.write_text(site.read_text(encoding="utf-8") + "inbox:\n" + lines, encoding="utf-8")


@pytest.fixture
def account(dovecot: Dovecot, project: Path, monkeypatch: pytest.MonkeyPatch) -> Account:
    """A fresh mailbox on the shared Dovecot, named in newsletter.yaml, its password in the environment."""
    account = dovecot.add_user()
    _configure(project, host="127.0.0.1", port=dovecot.port, username=account.username)
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", account.password)
    return account


def _eventually(look: Callable[[], list[Stored]], timeout: float = 30) -> list[Stored]:
    """What `look` finds once it finds something; AssertionError if it finds nothing within `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (found := look()):
        assert time.monotonic() < deadline, "nothing came"
        time.sleep(0.05)
    return found


def _ids(stored) -> list[str]:
    return [s.message_id for s in stored]


def test_recognised_messages_move_unread_and_a_person_s_reply_stays_unread(
    project, run, smtp_server, inbox, dovecot, account
):
    send_seed(project, run, inbox)
    token = make_token(SECRET, "roundup.example.org", "ann@example.org", SEED)
    unsubscribe = (
        f"From: ann@example.org\nTo: unsubscribe@example.org\nSubject: unsubscribe {token}\nMessage-ID: <u1@x>\n"
    )
    human = (DATA / "human-reply.eml").read_bytes()
    dovecot.deliver(
        account,
        bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User unknown"),
        bounce_for(inbox.by_recipient("dan@example.org"), "dan@example.org", "5.1.2", "Domain not found"),
        human,
        (DATA / "vacation-reply.eml").read_bytes(),
        f"{unsubscribe}\n".encode(),
    )
    # Someone has already opened this one in their mail program: it moves, and stays read.
    dovecot.deliver(
        account,
        bounce_for(inbox.by_recipient("cat@example.org"), "cat@example.org", "4.2.2", "Mailbox full"),
        seen=True,
    )

    result = run("inbox", "--ca-file", dovecot.ca_file)
    assert result.exit_code == 0, result.output
    assert "inbox: 6 read, 2 hard bounces, 1 soft, 1 unsubscribe, 1 auto-reply ignored, 1 left alone" in result.output
    left = dovecot.messages(account)
    assert [s.data.replace(b"\r\n", b"\n") for s in left] == [human.replace(b"\r\n", b"\n")]
    assert not left[0].seen
    moved = dovecot.messages(account, "Processed")
    assert len(moved) == 5
    assert [s.seen for s in moved] == [False, False, False, False, True]

    with SuppressionStore.open(project) as store:
        bob = store.get("bob@example.org")
        assert bob is not None and bob.why == Why.BOUNCE and bob.issue == SEED and bob.evidence["status"] == "5.1.1"
        assert store.get("dan@example.org") is not None
        ann = store.get("ann@example.org")
        assert ann is not None and ann.why == Why.MAILTO
        assert store.get("cat@example.org") is None and store.score("cat@example.org") == 0.5
        decisions = store.decisions()

    again = run("inbox", "--ca-file", dovecot.ca_file)
    assert again.exit_code == 0, again.output
    assert "inbox: 1 read, 0 hard bounces, 0 soft, 0 unsubscribes, 0 auto-replies ignored, 1 left alone" in again.output
    with SuppressionStore.open(project) as store:
        assert store.decisions() == decisions
    assert not dovecot.messages(account)[0].seen


def test_without_move_it_copies_and_expunges_only_that_message(project, run, smtp_server, inbox, monkeypatch):
    """RFC 6851's fallback, on a server that does not offer MOVE: COPY, \\Deleted, UID EXPUNGE of that UID alone
    (a plain EXPUNGE would also remove what a person marked deleted and meant to keep a while)."""
    send_seed(project, run, inbox)
    with Dovecot.running(capability="IMAP4rev1 SASL-IR LITERAL+ NAMESPACE UIDPLUS") as server:
        account = server.add_user()
        _configure(project, host="127.0.0.1", port=server.port, username=account.username)
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", account.password)
        bounce = bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User unknown")
        server.deliver(account, bounce, (DATA / "human-reply.eml").read_bytes())
        with server.client(account) as client:
            client.append("INBOX", b"Subject: marked deleted by a person\nMessage-ID: <kept@x>\n\n.\n", [b"\\Deleted"])

        result = run("inbox", "--ca-file", server.ca_file)
        assert result.exit_code == 0, result.output
        assert "2 read, 1 hard bounce," in result.output
        left = server.messages(account)
        assert sorted(_ids(left)) == sorted([HUMAN_ID, "<kept@x>"])
        assert all(not s.seen for s in left)
        (moved,) = server.messages(account, "Processed")
        assert moved.message_id == "<bounce.bob@example.org.5.1.1@mx.example.net>"
        assert not moved.seen and b"\\Deleted" not in moved.flags


def test_a_wrong_password_is_one_line_and_nothing_moves(project, run, dovecot, account, monkeypatch):
    dovecot.deliver(account, (DATA / "postfix-no-such-user.eml").read_bytes())
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "not-the-password-at-all")
    result = run("inbox", "--ca-file", dovecot.ca_file)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"error: 127.0.0.1:{dovecot.port} (IMAPS) refused the login for {account.username}: "
        "[AUTHENTICATIONFAILED] Authentication failed."
    ]
    assert not dovecot.messages(account)[0].seen and dovecot.messages(account, "Processed") == []
    with SuppressionStore.open(project) as store:
        assert store.decisions() == []


def test_an_untrusted_certificate_is_refused_until_its_ca_is_given(project, run, dovecot, account, monkeypatch):
    dovecot.deliver(account, (DATA / "postfix-no-such-user.eml").read_bytes())
    result = run("inbox")
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: 127.0.0.1:{dovecot.port} (IMAPS): the server's certificate is not trusted (")
    assert "--ca-file" in line
    assert len(dovecot.messages(account)) == 1 and dovecot.messages(account, "Processed") == []

    monkeypatch.setenv("NEWSLETTER_IMAP_CA_FILE", str(dovecot.ca_file))
    trusted = run("inbox")
    assert trusted.exit_code == 0, trusted.output
    assert "1 bounce for addresses never mailed" in trusted.output


def _padded(data: bytes, size: int) -> bytes:
    """`data` (a bounce) grown to `size` bytes by quoting a long returned message, in CRLF as stored."""
    head = data.replace(b"\r\n", b"\n").removesuffix(b"--B--\n").replace(b"\n", b"\r\n")
    start, end = b"--B\r\nContent-Type: text/plain\r\n\r\n", b"\r\n--B--\r\n"
    room = size - len(head) - len(start) - len(end)
    body = (b"x" * 76 + b"\r\n") * (room // 78)
    return head + start + body + b"y" * (room - len(body)) + end


def test_a_connection_dropped_mid_run_loses_nothing_and_the_rerun_carries_on(
    project, run, smtp_server, inbox, dovecot, account, monkeypatch
):
    size = READ_LIMIT * 3 // 4  # read whole; a FETCH brings as many as fit in FETCH_BYTES
    per_fetch = imap.FETCH_BYTES // size
    addresses = [f"p{n}@example.org" for n in range(per_fetch + 1)]
    assert run("send", ISSUE, "--to", write_list(project, ["email", *addresses]), "--yes").exit_code == 0
    bounces = [_padded(bounce_for(inbox.by_recipient(a), a, "5.1.1", "User unknown"), size) for a in addresses]
    dovecot.deliver(account, *bounces)

    # The server hangs up halfway through the second FETCH of messages: the first one's were recorded and moved.
    with CuttingProxy(dovecot.port, limit=per_fetch * size + size // 2) as proxy:
        monkeypatch.setenv("NEWSLETTER_IMAP_PORT", str(proxy.port))
        cut = run("inbox", "--ca-file", dovecot.ca_file)
    assert cut.exit_code == 1
    (line,) = cut.output.splitlines()
    assert line.startswith(f"error: lost the connection to 127.0.0.1:{proxy.port} (IMAPS) while reading messages (")
    assert line.endswith("what was read is recorded: run inbox again to carry on")
    with SuppressionStore.open(project) as store:
        assert sorted(d[1] for d in store.decisions()) == addresses[:per_fetch]
    assert len(dovecot.messages(account, "Processed")) == per_fetch
    (rest,) = dovecot.messages(account)
    assert rest.data == bounces[-1] and not rest.seen

    monkeypatch.delenv("NEWSLETTER_IMAP_PORT")
    again = run("inbox", "--ca-file", dovecot.ca_file)
    assert again.exit_code == 0, again.output
    assert "inbox: 1 read, 1 hard bounce," in again.output
    with SuppressionStore.open(project) as store:
        assert sorted(d[1] for d in store.decisions()) == addresses
        assert all(store.get(a) is not None for a in addresses)
    assert dovecot.messages(account) == []
    assert [s.data for s in dovecot.messages(account, "Processed")] == bounces


def test_what_cannot_be_read_is_one_clear_line_naming_what_to_fix(project, run, dovecot, account):
    dovecot.deliver(account, (DATA / "human-reply.eml").read_bytes())
    site = project / "newsletter.yaml"
    configured = site.read_text(encoding="utf-8")

    site.write_text(configured.replace(f"port: {dovecot.port}", f"port: {free_port()}"), encoding="utf-8")
    refused = run("inbox", "--ca-file", dovecot.ca_file)
    assert refused.exit_code == 1
    assert refused.output.startswith("error: cannot reach 127.0.0.1:") and "Connection refused" in refused.output

    site.write_text(configured.replace("inbox:\n", "inbox:\n  folder: Bounces\n"), encoding="utf-8")
    missing = run("inbox", "--ca-file", dovecot.ca_file)
    assert missing.exit_code == 1
    assert missing.output == (
        f"error: newsletter.yaml: inbox.folder: 127.0.0.1:{dovecot.port} (IMAPS) has no folder 'Bounces' "
        f"for {account.username}\n"
    )

    site.write_text(configured.split("inbox:\n")[0], encoding="utf-8")
    unset = run("inbox")
    assert unset.exit_code == 1
    assert unset.output.startswith("error: newsletter.yaml: inbox.host: no mailbox to read: give --maildir PATH")

    for result in (refused, missing, unset):
        assert len(result.output.splitlines()) == 1 and account.password not in result.output
    assert [not s.seen for s in dovecot.messages(account)] == [True]
    assert dovecot.messages(account, "Processed") == []


def test_a_server_that_never_answers_times_out_with_a_clear_message():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nothing ever says a word
        settings = imap.Settings("127.0.0.1", silent.getsockname()[1], "user", "password", timeout=0.3)
        with pytest.raises(ConnectFailed, match=r"^cannot reach 127\.0\.0\.1:\d+ \(IMAPS\): no answer in 0\.3 s$") as e:
            imap.connect(settings)
    assert e.value.retry


def test_a_server_that_stops_answering_mid_run_times_out_with_a_clear_message(dovecot, account, tmp_path):
    dovecot.deliver(account, b"From: ann@example.org\nSubject: a long letter\n\n" + (b"x" * 76 + b"\n") * 2600)
    with CuttingProxy(dovecot.port, limit=100_000, stall=True) as proxy:  # halfway through the message
        settings = imap.Settings(
            "127.0.0.1", proxy.port, account.username, account.password, ca_file=dovecot.ca_file, timeout=0.5
        )
        with pytest.raises(ConnectFailed) as caught, imap.open_mailbox(settings, tmp_path / "site.yaml") as source:
            list(source.messages(Summary()))
    assert str(caught.value) == (
        f"127.0.0.1:{proxy.port} (IMAPS) stopped answering while reading messages (no answer in 0.5 s); "
        "what was read is recorded: run inbox again to carry on"
    )
    assert caught.value.retry
    assert [s.seen for s in dovecot.messages(account)] == [False]


def test_watch_prints_each_decision_and_rides_out_a_server_that_hangs_up(
    project, run, smtp_server, inbox, dovecot, account
):
    send_seed(project, run, inbox)
    with (
        CuttingProxy(dovecot.port, limit=0) as proxy,
        cli_watching(
            project,
            *("inbox", "--ca-file", dovecot.ca_file, "--watch", "--every", "0.2"),
            env={"NEWSLETTER_IMAP_PORT": str(proxy.port)},
        ) as lines,
    ):
        lines.until(rf"^inbox: watching INBOX of {account.username} on 127\.0\.0\.1:{proxy.port} \(IMAPS\) every")
        lines.until(r"^inbox: cannot reach .*; trying again in 0\.2 s$")
        dovecot.deliver(
            account, bounce_for(inbox.by_recipient("bob@example.org"), "bob@example.org", "5.1.1", "User unknown")
        )
        proxy.limit = None  # the server is back
        found = lines.until(r"bob@example\.org")
        assert found.string.split() == ["bob@example.org", "hard", SEED]
        with SuppressionStore.open(project) as store:
            assert store.get("bob@example.org") is not None
        # The line is printed once the decision is recorded; the move follows it.
        moved = _eventually(lambda: dovecot.messages(account, "Processed"))
        assert len(moved) == 1 and not moved[0].seen and dovecot.messages(account) == []


@pytest.mark.parametrize("capability", [None, "IMAP4rev1 SASL-IR LITERAL+ NAMESPACE UIDPLUS"])
def test_a_message_another_reader_moved_first_is_a_note_not_a_stop(tmp_path, capability):
    """Two `inbox` runs at once on one folder: each reads the message; the second to move it is told it is gone."""
    with Dovecot.running(capability=capability) as server:
        account = server.add_user()
        server.deliver(
            account, (DATA / "postfix-no-such-user.eml").read_bytes(), (DATA / "human-reply.eml").read_bytes()
        )
        settings = imap.Settings("127.0.0.1", server.port, account.username, account.password, ca_file=server.ca_file)
        site_file = tmp_path / "newsletter.yaml"
        with imap.open_mailbox(settings, site_file) as first, imap.open_mailbox(settings, site_file) as second:
            told, told_second = Summary(), Summary()
            assert [key for key, _ in first.messages(told)] == [key for key, _ in second.messages(told_second)]
            assert first.move("1", told)
            assert not second.move("1", told_second)
        assert told_second.notes == ["message 1 went away before it could be moved; its decision is recorded"]
        assert _ids(server.messages(account)) == [HUMAN_ID]
        assert len(server.messages(account, "Processed")) == 1


def test_a_processed_folder_that_only_holds_folders_is_made_able_to_hold_messages(project, run, dovecot, account):
    with dovecot.client(account) as client:
        client.create_folder("Processed.2024")  # Dovecot lists Processed itself as \Noselect: a folder of folders
        assert b"\\Noselect" in next(f for f, _, name in client.list_folders() if name == "Processed")
    dovecot.deliver(account, (DATA / "postfix-no-such-user.eml").read_bytes(), (DATA / "human-reply.eml").read_bytes())
    result = run("inbox", "--ca-file", dovecot.ca_file)
    assert result.exit_code == 0, result.output
    assert "2 read" in result.output and "1 left alone" in result.output
    assert _ids(dovecot.messages(account)) == [HUMAN_ID]
    assert len(dovecot.messages(account, "Processed")) == 1


def test_a_folder_named_in_any_script_is_read(project, run, dovecot, account):
    """IMAP writes folder names in modified UTF-7, where & is the escape: both must reach the server right."""
    folder = "Boîte & rebonds"
    with dovecot.client(account) as client:
        client.create_folder(folder)
    dovecot.deliver(account, (DATA / "postfix-no-such-user.eml").read_bytes(), folder=folder)
    site = project / "newsletter.yaml"
    site.write_text(site.read_text(encoding="utf-8").replace("inbox:\n", f'inbox:\n  folder: "{folder}"\n'))
    result = run("inbox", "--ca-file", dovecot.ca_file)
    assert result.exit_code == 0, result.output
    assert "1 bounce for addresses never mailed" in result.output
    assert dovecot.messages(account, folder) == [] and len(dovecot.messages(account, "Processed")) == 1
