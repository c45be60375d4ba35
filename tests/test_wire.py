"""What goes over the wire, byte for byte: dot-stuffing (RFC 5321 4.5.2).

A line of the message that starts with "." must go out with another dot in
front, which the receiving server takes off again; a line holding only "."
would otherwise end the message early, and every other dotted line would
lose its dot. aiosmtpd un-stuffs before its handler sees anything, so these
tests use a bare server that keeps DATA exactly as it arrived.
"""

from __future__ import annotations

import email
import email.policy
import re

from .raw_smtp import Received, unstuffed
from .support import write_issue, write_list

# Every place issue text reaches the start of a line in the plain-text part.
DOTS = """
id: dots-on-the-wire
title: "Dots on the wire"
date: 2021-05-03
preheader: "Lines that start with a dot"
items:
  - status: new
    title: "An action"
    body: |
      .hidden starts this paragraph.

      ...and an ellipsis starts this one.

      .

      ..
    actions:
      - "Do a thing."
    sample_posts:
      - ".@AmnestyNow a post that starts with a dot"
    notes: |
      .NET developers welcome.
"""
# The names reach the start of a line too: each slot value goes on a quoted-printable line of its own.
NAMES = {"ann@example.com": ".Dot", "bob@example.com": "..", "cy@example.com": ".", "dee@example.com": "Dee"}


def _parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def _text(message: email.message.EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def _comparable(data: bytes) -> list[bytes]:
    """The message's lines with what differs between two compositions of it (Date, MIME boundary) made equal."""
    boundary = re.search(rb'boundary="([^"]+)"', data).group(1)
    data = re.sub(rb"(?m)^Date: [^\r\n]*", b"Date: -", data.replace(boundary, b"BOUNDARY"))
    return data.split(b"\r\n")


def _assert_stuffed(wire: bytes, original: bytes) -> None:
    """`wire` is `original` with one more dot in front of each line that starts with a dot, and nothing else."""
    wire_lines, lines = _comparable(wire), _comparable(original)
    assert len(wire_lines) == len(lines)
    for on_the_wire, line in zip(wire_lines, lines, strict=True):
        assert on_the_wire == (b"." + line if line.startswith(b".") else line), (on_the_wire, line)


def _recipient(received: Received) -> str:
    return re.fullmatch(rb"TO:<([^>]+)>", received.rcpt_to[0], re.I).group(1).decode()


def test_every_line_starting_with_a_dot_is_doubled_on_the_wire(project, run, raw_server):
    issue = write_issue(project, DOTS)
    people = write_list(project, ["email,name", *(f"{a},{n}" for a, n in NAMES.items())])
    dry = run("send", issue, "--to", people, "--dry-run")
    assert dry.exit_code == 0, dry.output
    composed = {}
    for path in (project / "outbox" / "test" / "dry-run").glob("*.eml"):
        data = path.read_bytes()
        composed[_parse(data)["To"].addresses[0].addr_spec] = data

    result = run("send", issue, "--to", people, "--yes")
    assert result.exit_code == 0, result.output
    received = {_recipient(r): r.data for r in raw_server.messages}
    assert sorted(received) == sorted(NAMES)
    dotted = 0
    for address, wire in received.items():
        # The same message the dry run wrote, stuffed: exactly what a receiving server un-stuffs.
        _assert_stuffed(wire, composed[address])
        dotted += sum(line.startswith(b"..") for line in wire.split(b"\r\n"))
        text = _text(_parse(unstuffed(wire)))
        assert f"Hi {NAMES[address]}," in text
        for line in (".hidden starts this paragraph.", "...and an ellipsis starts this one.", ".", "..", ".NET"):
            assert re.search(rf"^{re.escape(line)}", text, re.M), line
    assert dotted >= 4 * 4  # the body's and notes' lines in each message, at least: the test saw stuffing happen


def test_a_name_of_dots_reaches_a_line_of_its_own_and_comes_back_whole(project, run, raw_server):
    people = write_list(project, ["email,name", *(f"{a},{n}" for a, n in NAMES.items())])
    result = run("send", write_issue(project, DOTS), "--to", people, "--yes")
    assert result.exit_code == 0, result.output
    by_address = {_recipient(r): r.data for r in raw_server.messages}
    # ".Dot" and ".." are not encoded by quoted-printable: on the wire they start a line, and need the extra dot.
    assert re.search(rb"(?m)^\.\.Dot=\r$", by_address["ann@example.com"])
    assert re.search(rb"(?m)^\.\.\.=\r$", by_address["bob@example.com"])
    # A lone "." is encoded (=2E), so it can never end the message early.
    assert re.search(rb"(?m)^=2E=\r$", by_address["cy@example.com"])
    for address, wire in by_address.items():
        message = _parse(unstuffed(wire))
        assert f"Hi {NAMES[address]}," in message.get_body(("html",)).get_content()


def test_a_test_send_is_stuffed_too(project, run, raw_server):
    result = run("send", write_issue(project, DOTS), "--test", "advisor@example.org")
    assert result.exit_code == 0, result.output
    [received] = raw_server.messages
    wire = received.data.split(b"\r\n")
    assert b"..hidden starts this paragraph." in wire and b"..NET developers welcome." in wire
    assert all(line.startswith(b"..") for line in wire if line.startswith(b"."))
    text = _text(_parse(unstuffed(received.data)))
    assert re.search(r"^\.hidden starts this paragraph\.$", text, re.M)
    assert re.search(r"^\.\.$", text, re.M)


def test_the_raw_server_sees_what_a_careless_client_sends(raw_server):
    """The server itself must not un-stuff, or the tests above could not fail."""
    import smtplib

    with smtplib.SMTP("127.0.0.1", raw_server.port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        client.rcpt("b@example.org")
        client.docmd("DATA")
        client.send(b"Subject: x\r\n\r\n.not stuffed\r\n..stuffed\r\n.\r\n")
        assert client.getreply()[0] == 250
    [received] = raw_server.messages
    assert received.data == b"Subject: x\r\n\r\n.not stuffed\r\n..stuffed\r\n"
    assert unstuffed(received.data) == b"Subject: x\r\n\r\nnot stuffed\r\n.stuffed\r\n"
    assert received.mail_from == b"FROM:<a@example.org>" and raw_server.connections == 1
