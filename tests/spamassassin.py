"""SpamAssassin for tests: Debian's `spamassassin` on one message, offline, with a throwaway configuration.

The rules are the package's (/usr/share/spamassassin) and so are the plugins
it loads (its .pre files, copied from /etc/spamassassin); the machine's own
local.cf and anyone's ~/.spamassassin are never read. Nothing reaches the
network (-L, and DNS declared unavailable: no DNSBL, URIBL, Razor or Pyzor;
Debian's .pre files do not load DCC), and Bayes and auto-learning are off,
so the score depends on the message alone: SpamAssassin's score set 0. One
run takes a few seconds, most of it loading the rules. `spamassassin --lint`
with this configuration finds nothing.
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SPAMASSASSIN = Path("/usr/bin/spamassassin")
RULES = Path("/usr/share/spamassassin")
PACKAGE_CONFIG = Path("/etc/spamassassin")

LOCAL_CF = """\
dns_available no
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
use_bayes 0
bayes_auto_learn 0
# Every rule that fired, with its points (the total, in X-Spam-Status, is rounded to 0.1).
add_header all Rules _TESTSSCORES(,)_
"""


@dataclass(frozen=True)
class Verdict:
    rules: dict[str, float]  # every rule that fired, with its points

    @property
    def score(self) -> float:
        return round(sum(self.rules.values()), 3)

    def __str__(self) -> str:
        fired = ", ".join(f"{rule} {points:+g}" for rule, points in sorted(self.rules.items(), key=lambda r: -r[1]))
        return f"score {self.score:g} ({fired or 'no rule fired'})"


class SpamAssassin:
    def __init__(self, folder: Path, executable: Path = SPAMASSASSIN) -> None:
        if not executable.exists() or not PACKAGE_CONFIG.is_dir():
            pytest.fail(
                f"SpamAssassin is not installed ({executable}); install it with: "
                "apt-get update && apt-get install -y spamassassin (as root, as .ci/run does)"
            )
        self.executable = executable
        self.site = folder / "site"
        self.home = folder / "home"
        self.site.mkdir(parents=True)
        self.home.mkdir()
        for pre in PACKAGE_CONFIG.glob("*.pre"):
            shutil.copy(pre, self.site / pre.name)
        (self.site / "local.cf").write_text(LOCAL_CF, encoding="utf-8")
        (self.home / "user_prefs").write_text("", encoding="utf-8")

    def check(self, message: bytes) -> Verdict:
        done = subprocess.run(
            [
                str(self.executable),
                "--local",
                "--test-mode",
                f"--configpath={RULES}",
                f"--siteconfigpath={self.site}",
                f"--prefspath={self.home / 'user_prefs'}",
            ],
            input=message,
            capture_output=True,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        checked = email.message_from_bytes(done.stdout, policy=email.policy.compat32)
        rules = checked["X-Spam-Rules"]
        assert rules is not None, done.stdout[:2000]
        fired = re.findall(r"([A-Za-z0-9_]+)=(-?[0-9.]+)", " ".join(rules.split()))
        return Verdict({rule: float(points) for rule, points in fired})
