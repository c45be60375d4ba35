"""The seed issue, as a subscriber's server receives it, does not look like spam to SpamAssassin."""

from __future__ import annotations

import pytest

from .spamassassin import SpamAssassin
from .support import SEED, write_list


def test_spamassassin_scores_the_received_seed_at_zero_or_below(project, run, smtp_server, inbox, spamassassin):
    subscribers = write_list(project, ["email,name", "ann.reader@example.com,Ann Reader"])
    result = run("send", f"issues/{SEED}.yaml", "--to", subscribers, "--yes")
    assert result.exit_code == 0, result.output
    [received] = inbox.raw
    verdict = spamassassin.check(received)
    assert verdict.score <= 0, f"SpamAssassin scores the seed issue above 0: {verdict}"


def test_without_spamassassin_the_test_fails_saying_how_to_install_it(tmp_path):
    with pytest.raises(pytest.fail.Exception) as failed:
        SpamAssassin(tmp_path, tmp_path / "spamassassin")
    assert "apt-get install -y spamassassin" in str(failed.value)
