"""The subscriber list and the suppression list in the shapes real tools write them.

A suppression list that is misread mails people who left, so every shape
below must either be read in full or stop the send with FILE:LINE.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.delivery_state import DeliveryState
from newsletter.errors import NewsletterError
from newsletter.model import is_email_address
from newsletter.subscribers import read_subscribers, read_suppressions

from .support import SEED, cli_env, run_cli, write_list

PENDING, INVALID, SUPPRESSED = DeliveryState.PENDING, DeliveryState.INVALID, DeliveryState.SUPPRESSED

ISSUE = f"issues/{SEED}.yaml"


def _file(tmp_path: Path, text: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _problems(path: Path, reader) -> list[str]:
    with pytest.raises(NewsletterError) as caught:
        reader(path)
    return [str(p) for p in caught.value.problems]


def _entries(path: Path, suppressed: set[str] | None = None):
    return list(read_subscribers(path, suppressed))


# -- the address rule ---------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "ann@example.com",
        "o'brien@example.ie",
        "ann+news@example.com",
        "a.b.c@mail.example.co.uk",
        "!#$%&'*+-/=?^_`{|}~@example.com",
        "x" * 64 + "@example.com",
        "a@" + "b" * 63 + ".com",
    ],
)
def test_dot_atom_addresses_are_addresses(address):
    assert is_email_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "a\\b@example.com",  # a relay may read it as ab@example.com: not the ledger's address
        '"a b"@example.com',
        '"ann"@example.com',
        ".ann@example.com",
        "ann.@example.com",
        "a..b@example.com",
        "ann@example.com\n",
        "ann\x00@example.com",
        "ann\x0b@example.com",
        "ann\x0c@example.com",
        "ann\x1b@example.com",
        "ann\x7f@example.com",
        "zoë@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
        "a@" + ".".join(["b" * 60] * 5) + ".com",  # over 254 characters
        "a@b@example.com",
        "ann@example",
        "ann@-example.com",
        "ann smith@example.com",
        "Ann <ann@example.com>",
    ],
)
def test_other_strings_are_not(address):
    assert not is_email_address(address)


# -- the suppression list -----------------------------------------------------

SHAPES = {
    "mailing service export": "Email Address,First Name,Last Name\nann@example.com,Ann,Smith\nBob@Example.com,Bob,\n",
    "display names": "Ann Smith <ann@example.com>\n<bob@example.com>\n",
    "semicolons (Excel, French locale)": "email;unsubscribed\nann@example.com;2021-05-01\nbob@example.com;2021-05-02\n",
    "quoted": '"ann@example.com"\n"bob@example.com"\n',
    "tabs": "E-mail\tDate\nann@example.com\t2021-05-01\nbob@example.com\t2021-05-02\n",
    "capitalised, BOM": "\ufeffEMAIL,Name\nann@example.com,Ann\nbob@example.com,Bob\n",
    "plain, with comments": "# unsubscribed by hand\n\nann@example.com\n  bob@example.com  \n# the end\n",
    "display name with a comma": 'email,when\n"""Smith, Ann"" <ann@example.com>",x\nbob@example.com,y\n',
    "semicolons, a comma in a column": 'Email;"Nom, prénom"\nann@example.com;"Smith, Ann"\nbob@example.com;Bob\n',
}


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_suppression_lists_in_common_shapes_are_read(tmp_path, text):
    assert read_suppressions(_file(tmp_path, text, "suppressions.csv")) == {"ann@example.com", "bob@example.com"}


def test_a_suppression_line_without_an_address_stops_with_its_line(tmp_path):
    path = _file(tmp_path, "email,date\nann@example.com,x\n,2021-05-01\nAnn Smith,y\n\n,,\nbob@example.com\n")
    assert _problems(path, read_suppressions) == [
        f"{path}:3: no address in column 'email'",
        f"{path}:4: 'Ann Smith' is not an email address",
    ]


def test_a_plain_suppression_list_line_without_an_address_stops_with_its_line(tmp_path):
    path = _file(tmp_path, "ann@example.com\nbob@example.com;2021-05-01\ncat\x00@example.com\n")
    assert _problems(path, read_suppressions) == [
        f"{path}:2: 'bob@example.com;2021-05-01' is not an email address",
        f"{path}:3: the address contains a control character (U+0000)",
    ]


def test_a_wrong_file_as_suppression_list_shows_its_first_bad_lines_not_all(tmp_path):
    path = _file(tmp_path, "email\n" + "".join(f"Reader {i}\n" for i in range(30)))
    problems = _problems(path, read_suppressions)
    assert problems[0] == f"{path}:2: 'Reader 0' is not an email address"
    assert len(problems) == 21 and problems[-1] == f"{path}: and 10 more lines that hold no address"


def test_an_address_the_tool_would_never_send_to_is_still_suppressed(tmp_path):
    # Stricter than needed would stop the send over a harmless line.
    path = _file(tmp_path, "email\nzoë@exämple.com\nANN@example.com\n")
    assert read_suppressions(path) == {"zoë@xn--exmple-cua.com", "ann@example.com"}  # the domain as sent to


def test_invisible_characters_and_a_domain_in_its_own_script_still_suppress(project, run, smtp_server, inbox):
    # Pasted from a web page or a document: a zero-width space, a word joiner, a soft hyphen.
    people = write_list(
        project,
        ["email", "ann@example.com", "bob@example.com", "cat@example.com", "dan@xn--exmple-cua.com", "ok@x.org"],
    )
    (project / "suppressions.csv").write_text(
        "email\nann@example.com\u200b\n\u2060bob@example.com\nc\u00adat@example.com\ndan@exämple.com\n",
        encoding="utf-8",
    )
    result = run("send", f"issues/{SEED}.yaml", "--to", people, "--yes")
    assert result.exit_code == 0, result.output
    assert set(inbox.recipients()) == {"ok@x.org"}


@pytest.mark.parametrize("header", ["email,name,email", "Email,Name,E-mail Address", "email,City,city"])
def test_a_header_naming_a_column_twice_is_refused(tmp_path, header):
    path = _file(tmp_path, f"{header}\nann@example.com,Ann,x\n")
    for reader in (read_suppressions, _entries):
        (problem,) = _problems(path, reader)
        assert problem.startswith(f"{path}:1: ") and "name the same column" in problem, problem


def test_a_suppression_folder_is_an_error_not_a_traceback(tmp_path):
    (tmp_path / "suppressions.csv").mkdir()
    assert _problems(tmp_path / "suppressions.csv", read_suppressions) == [
        f"{tmp_path / 'suppressions.csv'}: is a folder, not a suppression list"
    ]


def test_a_suppression_field_over_the_csv_limit_is_an_error(tmp_path):
    path = _file(tmp_path, "email,note\nann@example.com," + "x" * 200_000 + "\n")
    (problem,) = _problems(path, read_suppressions)
    assert problem.startswith(f"{path}:2: not a readable CSV file: field larger than field limit"), problem


def test_suppressions_not_utf8_give_their_line(tmp_path):
    path = tmp_path / "suppressions.csv"
    path.write_bytes(b"email\nann@example.com\nren\xe9@example.com\n")
    assert _problems(path, read_suppressions) == [f"{path}:3: not valid UTF-8; save the list as UTF-8"]


# -- the subscriber list ------------------------------------------------------


def test_a_mailing_service_export_is_a_subscriber_list(tmp_path):
    path = _file(
        tmp_path,
        "Email Address,First Name,Last Name,City\n"
        "ann@example.com,Ann,Smith,Ottawa\n"
        "bob@example.com,Bob,,\n"
        ",Nobody,,\n"
        ",,,\n",  # the empty rows spreadsheets leave at the end
    )
    ann, bob, nobody = _entries(path)
    assert (ann.line, ann.email, ann.name, ann.state) == (2, "ann@example.com", "Ann Smith", PENDING)
    assert ann.fields["City"] == ann.fields["city"] == "Ottawa"  # {{ subscriber.city }} works too
    assert ann.fields["First Name"] == ann.fields["first_name"] == "Ann"
    assert (bob.name, bob.state) == ("Bob", PENDING)
    assert (nobody.line, nobody.state, nobody.reason) == (4, INVALID, "no address")


@pytest.mark.parametrize(
    "text",
    [
        "Email,Name\nann@example.com,Ann Smith\n",
        "email;name\nann@example.com;Ann Smith\n",
        "E-mail\tFull Name\nann@example.com\tAnn Smith\n",
        'email,name\n"Ann Smith <ann@example.com>",\n',
        'email,name\n"ann@example.com","Ann Smith"\n',
        "Ann Smith <ann@example.com>\n",
        '# a plain list\n"Ann Smith" <ann@example.com>\n',
    ],
)
def test_subscriber_lists_in_common_shapes(tmp_path, text):
    (entry,) = _entries(_file(tmp_path, text))
    assert (entry.email, entry.name, entry.state) == ("ann@example.com", "Ann Smith", PENDING)


def test_a_first_line_that_is_neither_header_nor_address_is_refused(tmp_path):
    path = _file(tmp_path, "Courriel,Nom\nann@example.com,Ann\n")
    assert _problems(path, _entries) == [
        f"{path}:1: the first line must name the address column (email, Email Address, E-mail) "
        "or be an address; it has: Courriel, Nom"
    ]


def test_a_tab_in_a_name_becomes_a_space(tmp_path):
    # Harmless in a header (it is folding white space) and not worth losing a subscriber over.
    (entry,) = _entries(_file(tmp_path, 'email,name\nann@example.com,"Ann\tSmith"\n'))
    assert (entry.name, entry.state) == ("Ann Smith", PENDING)


@pytest.mark.parametrize("char", ["\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028"])
def test_control_characters_make_a_row_invalid(tmp_path, char):
    path = _file(tmp_path, f'email,name\nann@example.com,"Ann{char}Smith"\n"bob{char}@example.com",Bob\n')
    ann, bob = _entries(path)
    code = f"U+{ord(char):04X}"
    assert ann.state == bob.state == INVALID
    assert ann.reason.startswith("the name contains a") and ann.reason.endswith(f"({code})"), ann.reason
    assert bob.reason.endswith(f"({code})") and char not in bob.reason, bob.reason
    # What `status` prints of them cannot drive the terminal.
    assert char not in ann.name + bob.email and ann.name.startswith("Ann\\") and bob.email.startswith("bob\\")


def test_a_quote_left_open_is_shown_where_it_opened(tmp_path):
    path = _file(tmp_path, 'email,name\nann@example.com,Ann\n"bob@example.com,Bob\ncat@example.com,Cat\n')
    ann, bob = _entries(path)
    assert ann.state == PENDING
    assert (bob.line, bob.state) == (3, INVALID)
    assert bob.reason == "the address contains a line break (U+000A): a quote left open?"
    (problem,) = _problems(path, read_suppressions)
    assert problem == f"{path}:3: the address contains a line break (U+000A): a quote left open?"


def test_a_backslash_address_is_invalid_not_rewritten(tmp_path):
    (entry,) = _entries(_file(tmp_path, "email\na\\b@example.com\n"))
    assert (entry.state, entry.reason) == (INVALID, "'a\\b@example.com' is not an email address")


def test_suppression_and_display_names_meet_on_the_address(tmp_path):
    entries = _entries(_file(tmp_path, "Email\nAnn Smith <ANN@example.com>\nbob@example.com\n"), {"ann@example.com"})
    assert [(e.email, e.state) for e in entries] == [("ANN@example.com", SUPPRESSED), ("bob@example.com", PENDING)]


def test_a_subscriber_header_field_over_the_csv_limit_is_an_error(tmp_path):
    path = _file(tmp_path, "email," + "x" * 200_000 + "\nann@example.com,1\n")
    (problem,) = _problems(path, _entries)
    assert problem.startswith(f"{path}:1: not a readable CSV file: field larger than field limit"), problem


def test_an_endless_line_ends_in_an_error(tmp_path):
    path = _file(tmp_path, "email,name\nann@example.com," + "x" * 1_100_000)
    (problem,) = _problems(path, _entries)
    assert problem == f"{path}:2: a line longer than 1,000,000 characters: is this the right file?"


# -- endless files, through the command line -----------------------------------


def test_dev_zero_as_the_subscriber_list(project):
    result = run_cli(project, "send", ISSUE, "--to", "/dev/zero", "--dry-run")
    assert result.returncode == 1, result.stderr
    assert result.stderr == "error: /dev/zero: is a device, not a regular file\n"


def test_dev_zero_as_the_suppression_list(project):
    write_list(project, ["email", "ann@example.com"])
    result = run_cli(project, "send", ISSUE, "--to", "list.csv", "--suppressed", "/dev/zero", "--dry-run")
    assert result.returncode == 1, result.stderr
    assert result.stderr == "error: /dev/zero: is a device, not a regular file\n"


@pytest.mark.skipif(not shutil.which("yes"), reason="needs yes(1)")
def test_an_endless_fifo_as_the_suppression_list(project):
    write_list(project, ["email", "ann@example.com"])
    fifo = project / "suppressions.csv"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", 'exec yes gone@example.com > "$1"', "sh", str(fifo)])
    try:
        result = run_cli(project, "send", ISSUE, "--to", "list.csv", "--dry-run")
    finally:
        writer.kill()
        writer.wait()
    assert result.returncode == 1, result.stderr
    assert result.stderr == "error: suppressions.csv: is a named pipe (FIFO), not a regular file\n"


def test_a_list_past_the_bound_ends_in_an_error(project):
    huge = project / "list.csv"
    huge.write_text("ann@example.com\n" * 70_000, encoding="utf-8")
    # The real bound is far above any list; a small one shows it holds without reading gigabytes.
    code = (
        "import sys; from pathlib import Path; import newsletter.subscribers as s; s.MAX_LIST_CHARS = 1_000_000\n"
        "try:\n    sum(1 for _ in s.read_subscribers(Path(sys.argv[1])))\n"
        "except s.NewsletterError as e:\n    print(e)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(huge)],
        cwd=project,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout == "list.csv:62501: the list is longer than 1,000,000 characters: is this the right file?\n"


# -- end to end: the shapes reach the send --------------------------------------


@pytest.mark.parametrize(
    "suppressions",
    [
        "Email Address,First Name\nbob@example.com,Bob\n",
        "Bob Jones <bob@example.com>\n",
        "email;unsubscribed\nbob@example.com;2021-05-01\n",
        '"bob@example.com"\n',
    ],
    ids=["export", "display name", "semicolons", "quoted"],
)
def test_dry_run_with_real_shapes_skips_the_suppressed(project, run, suppressions):
    (project / "suppressions.csv").write_text(suppressions, encoding="utf-8")
    path = write_list(
        project,
        ["Email Address,First Name,Last Name", "ann@example.com,Ann,Smith", "BOB@example.com,Bob,Jones"],
    )
    result = run("send", ISSUE, "--to", path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "skipped 1 suppressed" in result.output
    (eml,) = (project / "outbox" / SEED / "dry-run").iterdir()
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == "Ann Smith <ann@example.com>"
    assert "Hi Ann Smith," in message.get_body(("plain",)).get_content()


def test_a_bad_suppression_line_stops_the_send_before_it_starts(project, run, smtp_server, inbox):
    (project / "suppressions.csv").write_text("email\ngone@example.com\nAnn Smith\n", encoding="utf-8")
    result = run("send", ISSUE, "--to", write_list(project, ["email", "ann@example.com"]), "--yes")
    assert result.exit_code == 1
    assert result.output == "error: suppressions.csv:3: 'Ann Smith' is not an email address\n"
    assert inbox.recipients() == {}


def test_suppressions_folder_and_long_fields_are_one_line_errors(project, run):
    path = write_list(project, ["email", "ann@example.com"])
    (project / "suppressions.csv").mkdir()
    result = run("send", ISSUE, "--to", path, "--dry-run")
    assert (result.exit_code, result.output) == (1, "error: suppressions.csv: is a folder, not a suppression list\n")
    (project / "suppressions.csv").rmdir()
    long = write_list(project, ["email," + "x" * 200_000, "ann@example.com,1"], "long.csv")
    result = run("send", ISSUE, "--to", long, "--dry-run")
    assert result.exit_code == 1
    assert result.output.startswith("error: long.csv:1: not a readable CSV file: field larger than field limit")


def test_control_characters_never_reach_the_server(project, run, smtp_server, inbox):
    rows = ["email,name", "ok@example.com,Ok"]
    rows += [f'n{i}@example.com,"Eve{c}Bcc: x@example.com"' for i, c in enumerate("\x00\x0b\x0c\x1b\x7f")]
    rows += ["a\\b@example.com,Backslash"]
    result = run("send", ISSUE, "--to", write_list(project, rows), "--yes")
    assert result.exit_code == 0, result.output
    assert inbox.recipients() == {"ok@example.com": 1}
    status = run("status", ISSUE).output
    for code in ("0000", "000B", "000C", "001B", "007F"):
        assert f"the name contains a control character (U+{code})" in status, status
    assert "'a\\b@example.com' is not an email address" in status
