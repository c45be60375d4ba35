"""The Outlook-only markup of MJML's HTML, merged as MJML itself merges it.

MJML hides the tables that only Outlook (and old IE) should see in conditional
comments, `<!--[if mso | IE]>...<![endif]-->`, one per piece of a table, so a
section's markup is a chain of them with nothing in between. MJML's
JavaScript joins each chain into one comment (mjml-core's
`mergeOutlookConditionnals`); mjml-python, the Rust port we use, leaves about
two hundred separate ones in the seed issue, 3 KB that every subscriber
downloads and Gmail counts towards its clipping.
"""

from __future__ import annotations

import re

# A run of Outlook-only comments with nothing at all between them. Only
# comments opened exactly as `<!--[if mso | IE]>` join a run: MJML's own rule
# would also join one to the end of another kind (`<!--[if mso]>`, or the
# `<!--<![endif]-->` that closes what every client shows), which changes who
# sees what. Nor does white space join them, as it does in MJML: between two
# words it is a space every other client shows. (mjml-python writes none there.)
_COMMENT = r"<!--\[if mso \| IE\]>(?:(?!<!\[endif\]-->).)*<!\[endif\]-->"
_RUN = re.compile(rf"{_COMMENT}(?:{_COMMENT})+", re.S)
_SEAM = re.compile(r"<!\[endif\]--><!--\[if mso \| IE\]>")


def merge_conditionals(html: str) -> str:
    """`html` with each run of adjacent Outlook-only comments made one comment holding the same markup."""
    return _RUN.sub(lambda run: _SEAM.sub("", run.group(0)), html)
