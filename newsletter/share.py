"""What a reader posts when they share a sample post: one definition, for the share links and for `check`."""

from __future__ import annotations

import re

from .model import Item


def post_text(item: Item, post: str) -> str:
    """`post` as it would be posted: with the item's hashtags that it does not already carry appended.

    Networks match hashtags without regard to case, so #whatshappeninginmyanmar
    in the post already counts as the item's #WhatsHappeningInMyanmar.
    """
    missing = [f"#{tag}" for tag in item.hashtags if not _has_hashtag(post, tag)]
    return " ".join([post, *missing]) if missing else post


def _has_hashtag(text: str, tag: str) -> bool:
    # A whole hashtag: #Myanmar is not in #MyanmarSolidarity.
    return re.search(rf"(?<![\w#])#{re.escape(tag)}(?!\w)", text, re.IGNORECASE) is not None
