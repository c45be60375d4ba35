"""The subscriber list and the suppression list in the shapes real tools write them."""

from __future__ import annotations

import pytest

from newsletter.model import is_email_address

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
