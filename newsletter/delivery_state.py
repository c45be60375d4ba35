"""Where each recipient of an issue stands: the one vocabulary of the list, the send and the ledger.

The list reader gives each row its first state (`subscribers`), the send
moves it on (`delivery`), and the send ledger records it (`ledger`), whose
column holds these values. `status` shows them, in this order.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    PENDING = "pending"  # to be sent
    SENDING = "sending"  # the final dot went out and no answer was recorded: it may or may not have arrived
    SENT = "sent"  # the server accepted it: never sent again
    FAILED = "failed"  # refused for good, or given up on after retries (`--retry-failed` tries again)
    DUPLICATE = "duplicate"  # the address is listed before: a record of the list, never sent
    INVALID = "invalid"  # not an address that can be mailed: a record of the list, never sent
    SUPPRESSED = "suppressed"  # the person left: never mailed this issue, even on a resume without the list
