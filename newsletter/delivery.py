"""Deliver prepared messages over a pool of SMTP connections, with the ledger.

Each worker thread owns one connection and reuses it for many messages.
Temporary replies and dropped connections are retried with backoff; a
permanent reply fails that recipient only; a run of failures in a row, a
refused login or an unreachable server stops the send, which can then be
resumed by running the same command.

`deliver` carries out a send's plan (`send_plan`) with the pool. One
message goes out the same way whoever sends it (`courier.Courier`, pipelined
where the server offers it): the pool for the list, and `deliver_one` for
the --test copy, whose refusals read as the pool records them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Protocol

from .courier import Courier, Letter, Refused, Result, Unanswered
from .delivery_state import DeliveryState
from .errors import NewsletterError, Problem
from .ledger import Ledger, Mark, Row
from .message import Composer
from .personalise import Recipient
from .send_plan import Plan
from .smtp import ConnectFailed, Settings, connect
from .suppressions import SuppressionStore
from .text import printable
from .unsubscribe import secret_fingerprint
from .verp import return_path

# A letter may wait, its DATA accepted, for the next message's commands to go in the same write (courier.py)
# while the rate is waited for; before a longer wait it is sent on its own. Servers wait minutes in DATA.
HOLD_AT_MOST = 1.0  # seconds


@dataclass(frozen=True)
class Options:
    connections: int = 4
    rate: float | None = None  # messages per second, all connections together
    max_attempts: int = 5
    retry_delay: float = 2.0  # before the second attempt; doubles after each
    max_failures_in_a_row: int = 20


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    uncertain: int = 0  # sent, but the server's answer was lost
    suppressed: int = 0  # left (unsubscribed, bounced) after the send was planned: not sent
    stopped: str | None = None  # why the send stopped early, if it did
    interrupted: bool = False
    elapsed: float = 0.0


class Clock(Protocol):
    """The pool's time: the rate, retry delays and the elapsed time go by it, so that a test can give it a
    clock of its own and check them without waiting."""

    def now(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        """Wait until `deadline` (a `now()` value) or until `stop` is set; True if stopped."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, deadline - time.monotonic()))


def deliver(
    plan: Plan,
    settings: Settings,
    options: Options,
    *,
    key: str,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    clock: Clock | None = None,
) -> Outcome:
    """Send what the plan says, its links signed with `key`; the plan's ledger stays open.

    Should the ledger's file be deleted or replaced during the send, the
    send stops, the record is written back from the open database, and
    NewsletterError says what happened.
    """
    ledger, identity = plan.ledger, plan.identity
    # Only now, with the send confirmed, is the issue recorded as sent from this file, with this content
    # and key, and do earlier failures become sendable.
    ledger.record_issue(replace(plan.admitted.record, secret=secret_fingerprint(key)))
    if plan.resend_uncertain:
        ledger.reset(identity, DeliveryState.SENDING)
    if plan.retry_failed:
        ledger.reset(identity, DeliveryState.FAILED)
    composer = Composer.prepare(plan.checked.rendered)
    rows = ledger.pending(identity)
    if limit is not None:
        rows = islice(rows, limit)
    # The plan read who left when it was made; a send of 100,000 takes long enough for some to leave
    # meanwhile, so the store is asked again before each message (a lookup costs microseconds).
    with SuppressionStore.open(plan.checked.project.root) as store:
        pool = DeliveryPool(
            composer,
            settings,
            ledger,
            key,
            options,
            on_progress,
            content=plan.admitted.content,
            clock=clock,
            left=_asking(store),
        )
        outcome = pool.run(rows)
    if not ledger.intact():
        found = ledger.restore()
        aside = f"; the file found in its place was kept as {found.name}" if found else ""
        raise NewsletterError(
            Problem(
                ledger.path,
                f"the send ledger was deleted or replaced while sending (sent {outcome.sent} this run). It has been "
                f"written back from the open copy{aside}, so nobody is mailed twice; the send stopped. "
                "Run the same command again to continue",
            )
        )
    return outcome


def _asking(store: SuppressionStore) -> Callable[[str], str | None]:
    """`DeliveryPool`'s `left`: why an address is in `store` now, if it is; one connection shared by the workers."""
    lock = threading.Lock()

    def left(email: str) -> str | None:
        with lock:
            found = store.get(email)
        return None if found is None else str(found.why)

    return left


class _Fatal(Exception):
    """The send cannot go on (login refused, server unreachable, certificate not trusted)."""


def deliver_one(settings: Settings, sender: str, recipient: str, message: bytes) -> str:
    """One message to one address over a connection of its own (the --test copy); returns the server's acceptance.

    Raises NewsletterError: `connect`'s for a connection that fails, and for a refusal the
    server's reply, as the pool records it for a recipient of the list.
    """
    courier = Courier(connect(settings), settings)
    try:
        [(_, result)] = courier.send(Letter(sender, recipient, message, lambda: None)) + courier.flush()
    finally:
        courier.close()
    if isinstance(result, Unanswered):
        raise NewsletterError(f"sending failed: {result}")
    if isinstance(result, Refused):
        if result.code is None:
            raise NewsletterError(f"sending failed: {result.reply}")
        raise NewsletterError(f"the server refused {recipient}: {printable(result.reply)}")
    return result


class DeliveryPool:
    """Worker threads, each with an SMTP connection of its own, that send the rows given and mark each in the ledger."""

    def __init__(
        self,
        composer: Composer,
        settings: Settings,
        ledger: Ledger,
        secret: str,
        options: Options,
        on_progress: Callable[[int], None] | None = None,
        *,
        content: str | None = None,
        clock: Clock | None = None,
        left: Callable[[str], str | None] | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        # Asked before each attempt: why the address left (unsubscribed, bounced) since the send was planned, if it did.
        self.left = left or (lambda email: None)
        self.composer = composer
        self.content = content  # which version of the issue each recipient gets, for the ledger
        self.settings = settings
        self.ledger = ledger
        self.secret = secret
        self.options = options
        self.on_progress = on_progress or (lambda n: None)
        self.sender_address = composer.rendered.site.from_.email
        # With a bounce address, each message's envelope sender names its ledger row (verp.py), so that a bounce
        # says whose message it was; a signature costs microseconds against a millisecond to send.
        self.bounce_address = composer.rendered.site.bounce_address
        self.identity = composer.rendered.identity
        self.stop = threading.Event()
        self.outcome = Outcome()
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._running = 0  # workers not yet finished
        self._finished = threading.Condition()
        self._next_slot = 0.0

    def run(self, rows: Iterator[Row]) -> Outcome:
        """Send every row; returns when done, stopped, or interrupted (Ctrl-C)."""
        started = self.clock.now()
        work: queue.Queue[Row | None] = queue.Queue(maxsize=self.options.connections * 4)
        workers = [
            threading.Thread(target=self._work, args=(work,), name=f"smtp-{i}", daemon=True)
            for i in range(self.options.connections)
        ]
        self._running = len(workers)
        for worker in workers:
            worker.start()
        try:
            for row in rows:
                while not self.stop.is_set():
                    self._watch_ledger()
                    try:
                        work.put(row, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    break
            for _ in workers:
                while self._workers_running():
                    self._watch_ledger()
                    try:
                        work.put(None, timeout=0.2)
                        break
                    except queue.Full:
                        continue
            while self._workers_running(wait=0.2):
                self._watch_ledger()
        except KeyboardInterrupt:
            # Stop after the messages in flight; their rows are marked as
            # they finish. A second Ctrl-C ends the process at once.
            self.outcome.interrupted = True
            self.stop.set()
            _wake(work, len(workers))
            while self._workers_running(wait=None):
                pass
        self.outcome.elapsed = self.clock.now() - started
        return self.outcome

    def _workers_running(self, wait: float | None = 0.0) -> bool:
        """Whether a worker is still at work, after waiting up to `wait` seconds (None: until none is).

        Counted by the workers themselves rather than asked of `Thread`: a
        Ctrl-C that lands inside `Thread.join` can leave a thread that is
        still sending marked as finished (Python 3.11), and the process
        would end in the middle of a message.
        """
        with self._finished:
            if wait != 0.0:
                self._finished.wait_for(lambda: self._running == 0, wait)
            return self._running > 0

    def _watch_ledger(self) -> None:
        """Stop if the ledger's file is gone: whatever is sent now, the next run would not know.

        One stat per message costs a microsecond, against a millisecond to send it.
        """
        if not self.ledger.intact():
            self._halt(f"the send ledger {self.ledger.path} was deleted or replaced")

    # -- one worker --------------------------------------------------------

    def _work(self, work: queue.Queue[Row | None]) -> None:
        worker = _Worker(self)
        try:
            try:
                worker.run(work)
            finally:
                worker.write_down()  # answers already read are recorded, whatever stopped the worker
        except NewsletterError as exc:  # the ledger cannot be written: nothing may be sent unrecorded
            self._halt(str(exc))
        except Exception as exc:  # a dead worker must stop the send, not leave it waiting forever
            self._halt(f"unexpected error: {exc!r}")
        finally:
            worker.hang_up()
            with self._finished:
                self._running -= 1
                self._finished.notify_all()

    def _connect(self) -> Courier:
        delay = self.options.retry_delay
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                return Courier(connect(self.settings), self.settings)
            except ConnectFailed as exc:
                if not exc.retry or attempt == self.options.max_attempts or self.stop.is_set():
                    raise _Fatal(str(exc)) from None
                self._sleep(delay)
                delay *= 2
            except NewsletterError as exc:  # a password smtplib cannot send, and the like
                raise _Fatal(str(exc)) from None
        raise _Fatal(f"cannot reach {self.settings.address}")

    def _wait_for_rate(self, before_waiting: Callable[[float], None]) -> None:
        if not self.options.rate:
            return
        with self._lock:
            now = self.clock.now()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1 / self.options.rate
        if slot > now:
            before_waiting(slot - now)
            self.clock.sleep_until(slot, self.stop)

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the send is stopped meanwhile; True if it was."""
        return self.clock.sleep_until(self.clock.now() + seconds, self.stop)

    def _count(self, *, ok: bool, reply: str, uncertain: bool = False) -> None:
        with self._lock:
            if ok:
                self.outcome.sent += 1
                self._in_a_row = 0
            else:
                if uncertain:
                    self.outcome.uncertain += 1
                else:
                    self.outcome.failed += 1
                self._in_a_row += 1
                if self._in_a_row >= self.options.max_failures_in_a_row and not self.stop.is_set():
                    self.outcome.stopped = f"{self._in_a_row} messages in a row failed; the last: {reply}"
                    self.stop.set()
            self.on_progress(1)

    def _halt(self, why: str) -> None:
        with self._lock:
            if self.outcome.stopped is None:
                self.outcome.stopped = why
            self.stop.set()


@dataclass(eq=False)
class _Attempt(Letter):
    """A row's message on its way, and which try this is."""

    row: Row
    number: int  # 1 for the first
    delay: float  # before the next, should this one be refused for now
    due: float  # when it may go (a retry waits)


class _Worker:
    """One thread of the pool: its connection, and the attempts it owes to try again.

    With PIPELINING the courier holds the last letter whose DATA was accepted until the next one goes; the
    worker never waits (for work, for a retry, for a long rate slot) with one held, so that no server is
    kept in the middle of a message, and so that a letter's answer is recorded as soon as it can be.
    """

    def __init__(self, pool: DeliveryPool) -> None:
        self.pool = pool
        self.courier: Courier | None = None
        self.again: deque[_Attempt] = deque()  # a letter refused for now goes again, on this thread, oldest first
        # Acceptances read while the next letter is held: they go into the ledger with that letter's in-flight mark,
        # one commit for the two (a commit costs more than the rows in it). Never more than one per connection.
        self.unrecorded: list[Mark] = []

    def run(self, work: queue.Queue[Row | None]) -> None:
        pool = self.pool
        last = False  # the queue is done; what is owed is still tried
        while not pool.stop.is_set():
            if self.again:
                self._settle(self._flush())
                attempt = self.again.popleft()
                if attempt.due > pool.clock.now() and pool.clock.sleep_until(attempt.due, pool.stop):
                    return  # stopped while waiting: the row stays pending
                self._try(attempt)
                continue
            if last:
                self._settle(self._flush())  # the last retry may be held
                if self.again:
                    continue
                return
            try:
                row = work.get_nowait()
            except queue.Empty:
                self._settle(self._flush())
                if self.again:
                    continue
                row = work.get()
            if row is None or pool.stop.is_set():  # a row taken after a stop stays pending
                self._settle(self._flush())
                last = True
                continue
            attempt = self._first(row)
            if attempt is not None:
                self._try(attempt)

    def hang_up(self) -> None:
        """Close the connection; a letter still held (its content never sent) is dropped, and its row stays pending."""
        if self.courier is not None:
            self.courier.close()
            self.courier = None

    def _first(self, row: Row) -> _Attempt | None:
        pool = self.pool
        try:
            message = pool.composer.personalise(Recipient(row.email, row.name, row.fields), pool.secret).message()
        except NewsletterError as exc:
            pool.ledger.mark(row.id, DeliveryState.FAILED, str(exc), attempt=True)
            pool._count(ok=False, reply=str(exc))
            return None
        sender = pool.sender_address
        if pool.bounce_address:
            sender = return_path(pool.bounce_address, pool.secret, row.id, pool.identity)
        # Until the server answers the final dot, the message may or may not be accepted: if this process dies
        # meanwhile, the row says so.
        in_flight = Mark(row.id, DeliveryState.SENDING, content=pool.content)
        return _Attempt(
            sender, row.email, message, lambda: self.write_down(in_flight), row, 1, pool.options.retry_delay, 0.0
        )

    def _try(self, attempt: _Attempt) -> None:
        pool = self.pool
        pool._wait_for_rate(self._before_waiting)
        why = pool.left(attempt.row.email)
        if why is not None:
            pool.ledger.mark(attempt.row.id, DeliveryState.SUPPRESSED, f"left during the send ({why})")
            with pool._lock:
                pool.outcome.suppressed += 1
                pool.on_progress(1)
            return
        if pool.stop.is_set():  # stopped while waiting for the rate: the row stays pending
            return
        if self.courier is None:
            try:
                self.courier = pool._connect()
            except _Fatal as exc:
                # Not this recipient's doing: the row stays pending with its own last reply,
                # and the reason (a refused login, say) is shown, never stored on a row.
                pool._halt(str(exc))
                return
        self._settle(self.courier.send(attempt))

    def _before_waiting(self, seconds: float) -> None:
        """Nothing answered waits unrecorded, and no letter waits held for long (its server waits in its DATA)."""
        if seconds > HOLD_AT_MOST:
            self._settle(self._flush())
        self.write_down()

    def _flush(self) -> list[tuple[Letter, Result]]:
        return self.courier.flush() if self.courier is not None else []

    def write_down(self, *also: Mark) -> None:
        """Put the acceptances not yet recorded into the ledger, with `also`, in one commit."""
        if self.unrecorded or also:
            self.pool.ledger.mark_all([*self.unrecorded, *also])
            self.unrecorded.clear()

    def _settle(self, settled: list[tuple[Letter, Result]]) -> None:
        """Record how each letter went; one refused for now is owed again."""
        if self.courier is not None and self.courier.broken:  # lost, or closing: the next letter needs another
            self.hang_up()
        for letter, result in settled:
            assert isinstance(letter, _Attempt)
            self._record(letter, result)
        if self.courier is None or self.courier.held is None:  # no write (and commit) is about to come
            self.write_down()

    def _record(self, attempt: _Attempt, result: Result) -> None:
        pool, row = self.pool, attempt.row
        if isinstance(result, str):
            self.unrecorded.append(Mark(row.id, DeliveryState.SENT, result, attempt=True, content=pool.content))
            pool._count(ok=True, reply=result)
            return
        if isinstance(result, Unanswered):
            # The message went out but no answer came back: the server may
            # have it. Sending again could mail this person twice.
            pool.ledger.mark(row.id, DeliveryState.SENDING, f"uncertain: {result}", attempt=True)
            pool._count(ok=False, reply=str(result), uncertain=True)
            return
        reply, permanent, number = result.reply, result.permanent, attempt.number
        if permanent or number == pool.options.max_attempts or pool.stop.is_set():
            if permanent or not pool.stop.is_set():
                final = reply if permanent else f"gave up after {number} attempts: {reply}"
                pool.ledger.mark(row.id, DeliveryState.FAILED, final, attempt=True)
                pool._count(ok=False, reply=final)
            else:
                pool.ledger.mark(row.id, DeliveryState.PENDING, reply, attempt=True)
            return
        pool.ledger.mark(row.id, DeliveryState.PENDING, reply, attempt=True)
        due = pool.clock.now() + attempt.delay
        self.again.append(replace(attempt, number=number + 1, delay=attempt.delay * 2, due=due))


def _wake(work: queue.Queue[Row | None], workers: int) -> None:
    """Empty the queue and tell every worker to stop, even one waiting for work."""
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            break
    for _ in range(workers):
        work.put_nowait(None)
