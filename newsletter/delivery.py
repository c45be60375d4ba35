"""Deliver prepared messages over a pool of SMTP connections, with the ledger.

Each worker thread owns one connection and reuses it for many messages.
Temporary replies and dropped connections are retried with backoff; a
permanent reply fails that recipient only; a run of failures in a row, a
refused login or an unreachable server stops the send, which can then be
resumed by running the same command. Replies that ask the send to slow
down lower its pace (pace.py): fewer connections, a lower rate; the
message is tried again, and such a refusal is not one of its attempts.

`deliver` carries out a send's plan (`send_plan`) with the pool. One
message goes out the same way whoever sends it (`courier.Courier`, pipelined
where the server offers it): the pool for the list, and `deliver_one` for
the --test copy, whose refusals read as the pool records them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Protocol

from .courier import Courier, Letter, Refused, Result, Unanswered
from .delivery_state import DeliveryState
from .errors import NewsletterError, Problem
from .ledger import Ledger, Mark, Row
from .message import Composer
from .pace import STALLED_AFTER, Pace, Slowdown, slowdown
from .personalise import Recipient
from .send_plan import Plan
from .smtp import ConnectFailed, Settings, connect
from .suppressions import SuppressionStore
from .text import printable
from .unsubscribe import secret_fingerprint
from .verp import return_path
from .work_queue import WorkQueue

FREE_SLOWDOWNS = 10  # refusals asking to slow down that a recipient may have before they count as its attempts
MOST_DELAY = 60.0  # seconds, at most, before a message the relay asked to slow down for goes again
PLACE_POLL = 0.1  # seconds between looks at the pace for a worker the pace has no connection for
# A letter may wait, its DATA accepted, for the next message's commands to go in the same write (courier.py)
# while the pace's slot is waited for; before a longer wait it is sent on its own. Servers wait minutes in DATA.
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
    slowed: int = 0  # refusals that asked the send to slow down: of a message (tried again), or of a connection
    pace: str = ""  # the pace at the end (`Pace.describe`)


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
    pace: Pace | None = None,
) -> Outcome:
    """Send what the plan says, its links signed with `key`; the plan's ledger stays open.

    Should the ledger's file be deleted or replaced during the send, the
    send stops, the record is written back from the open database, and
    NewsletterError says what happened. `pace`, on the same clock, is the pool's (for a progress line to show);
    without it, the pool makes its own from `options`.
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
            pace=pace,
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


class _Crowded(Exception):
    """The relay refused one more connection while others of the send are open: the pace has one fewer."""


@dataclass(eq=False)
class _Job:
    """A recipient on its way: its message, composed once, and what its attempts so far left."""

    row: Row
    message: bytes | None = None  # composed when first taken
    sender: str = ""
    attempts: int = 0  # counted against Options.max_attempts
    slowed: int = 0  # refusals that only asked the send to slow down
    delay: float = 0.0  # before the next counted attempt; doubles after each


@dataclass(eq=False)
class _Attempt(Letter):
    """One try at a job, as the courier takes it."""

    job: _Job
    started: float  # its slot in the pace


@dataclass(eq=False)
class _Line:
    """One worker's connection, and the acceptances read on it that are not yet in the ledger.

    With PIPELINING the courier holds the last letter whose DATA was accepted until the next one goes; an acceptance
    read meanwhile goes into the ledger with that next letter's in-flight mark, one commit for the two (a commit
    costs more than the rows in it): never more than one in flight per connection. The worker never waits (for
    work, a retry, a long slot) with a letter held or an acceptance unrecorded.
    """

    courier: Courier | None = None
    unrecorded: list[Mark] = field(default_factory=list)

    @property
    def holding(self) -> bool:
        return self.courier is not None and self.courier.held is not None

    def write_down(self, ledger: Ledger, *also: Mark) -> None:
        """Put the acceptances not yet recorded into the ledger, with `also`, in one commit."""
        if self.unrecorded or also:
            ledger.mark_all([*self.unrecorded, *also])
            self.unrecorded.clear()


class DeliveryPool:
    """Worker threads, each with an SMTP connection of its own, that send the rows given and mark each in the ledger.

    How many of them send at once, and how fast, is the `Pace`'s to say: when it has fewer connections than
    workers hold, a worker closes its connection and waits for a place. A refused message waits for its retry in the
    `WorkQueue`, not in its worker, which goes on with the next one.
    """

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
        pace: Pace | None = None,
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
        self.pace = pace or Pace(options.connections, options.rate, self.clock.now)
        self.sender_address = composer.rendered.site.from_.email
        # With a bounce address, each message's envelope sender names its ledger row (verp.py), so that a bounce
        # says whose message it was; a signature costs microseconds against a millisecond to send.
        self.bounce_address = composer.rendered.site.bounce_address
        self.identity = composer.rendered.identity
        self.stop = threading.Event()
        self.outcome = Outcome()
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._open = 0  # connections open now
        self._placed = 0  # workers holding one of the pace's connections: open, or about to be
        self._running = 0  # workers not yet finished
        self._finished = threading.Condition()
        self._work: WorkQueue[_Job] = WorkQueue(options.connections * 4, self.clock.now, self.stop)

    def run(self, rows: Iterator[Row]) -> Outcome:
        """Send every row; returns when done, stopped, or interrupted (Ctrl-C)."""
        started = self.clock.now()
        workers = [
            threading.Thread(target=self._worker, name=f"smtp-{i}", daemon=True)
            for i in range(self.options.connections)
        ]
        self._running = len(workers)
        for worker in workers:
            worker.start()
        try:
            for row in rows:
                while not self.stop.is_set():
                    self._watch_ledger()
                    if self._work.put(_Job(row), timeout=0.2):
                        break
                if self.stop.is_set():
                    break
            self._work.close()
            while self._workers_running(wait=0.2):
                self._watch_ledger()
        except KeyboardInterrupt:
            # Stop after the messages in flight; their rows are marked as
            # they finish. A second Ctrl-C ends the process at once.
            self.outcome.interrupted = True
            self.stop.set()
            self._work.wake()
            while self._workers_running(wait=None):
                pass
        self.outcome.elapsed = self.clock.now() - started
        self.outcome.pace = self.pace.describe()
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

    def _worker(self) -> None:
        line = _Line()
        placed = False  # whether this worker holds one of the pace's connections (open, or to be opened)
        crowded = self.options.retry_delay  # before connecting again after the relay refused one connection more
        try:
            try:
                while not self.stop.is_set():
                    if placed and self._surplus():  # the pace has fewer connections now: this one goes
                        self._finish(line)
                        self._drop(line)
                        placed = False
                    if not placed:
                        if not self._wait_for_place():
                            return
                        placed = True
                    # With a letter held, only work ready now; before waiting for more, the held letter goes.
                    taken = self._work.take_now() if line.holding else None
                    if taken is None:
                        self._finish(line)
                        taken = self._work.take()
                    if taken is None:
                        return
                    job, due = taken
                    if due > self.clock.now() and self.clock.sleep_until(due, self.stop):
                        self._work.done(job)  # stopped while waiting: the row stays pending
                        return
                    try:
                        self._deliver(job, line)
                    except _Crowded:
                        self._leave_place()
                        placed = False
                        if self._sleep(crowded):
                            return
                        crowded = min(2 * crowded, MOST_DELAY)
                    else:
                        if line.courier is not None:
                            crowded = self.options.retry_delay
            finally:
                line.write_down(self.ledger)  # answers already read are recorded, whatever stopped the worker
        except NewsletterError as exc:  # the ledger cannot be written: nothing may be sent unrecorded
            self._halt(str(exc))
        except Exception as exc:  # a dead worker must stop the send, not leave it waiting forever
            self._halt(f"unexpected error: {exc!r}")
        finally:
            self._drop(line)
            if placed:
                self._leave_place()
            with self._finished:
                self._running -= 1
                self._finished.notify_all()

    def _wait_for_place(self) -> bool:
        """Take one of the pace's connections, waiting until there is one free; False if the send ends or stops
        meanwhile. Workers beyond the pace's connections wait here, their connections closed."""
        while not self.stop.is_set() and not self._work.finished():
            with self._lock:
                if self._placed < self.pace.connections:
                    self._placed += 1
                    return True
            self.stop.wait(PLACE_POLL)
        return False

    def _surplus(self) -> bool:
        """Whether more workers hold a connection than the pace allows; if so, the caller gives its place up."""
        with self._lock:
            if self._placed > self.pace.connections:
                self._placed -= 1
                return True
            return False

    def _leave_place(self) -> None:
        with self._lock:
            self._placed -= 1

    def _deliver(self, job: _Job, line: _Line) -> None:
        """One attempt at `job`, taken from the queue: given back to it (`done` or `again`) however it ends, now or,
        held by the courier for the next message, later."""
        row = job.row
        if job.message is None and not self._compose(job):
            return
        started = self.pace.slot()
        now = self.clock.now()
        if started > now:
            if started - now > HOLD_AT_MOST:
                self._finish(line)
            line.write_down(self.ledger)
            if self.clock.sleep_until(started, self.stop):
                self._work.done(job)  # stopped while waiting for its turn: the row stays pending
                return
        if self.stop.is_set():
            self._work.done(job)
            return
        why = self.left(row.email)
        if why is not None:
            self.ledger.mark(row.id, DeliveryState.SUPPRESSED, f"left during the send ({why})")
            with self._lock:
                self.outcome.suppressed += 1
                self.on_progress(1)
            self._work.done(job)
            return
        if line.courier is None:
            try:
                line.courier = self._connect()
            except _Crowded:
                self._work.again(job, self.clock.now())  # another connection sends it; not this recipient's doing
                raise
            except _Fatal as exc:
                # Not this recipient's doing: the row stays pending with its own last reply,
                # and the reason (a refused login, say) is shown, never stored on a row.
                self._work.done(job)
                self._halt(str(exc))
                return
        # Until the server answers the final dot, the message may or may not be accepted: if this process dies
        # meanwhile, the row says so.
        in_flight = Mark(row.id, DeliveryState.SENDING, content=self.content)
        assert job.message is not None
        attempt = _Attempt(
            job.sender, row.email, job.message, lambda: line.write_down(self.ledger, in_flight), job, started
        )
        self._settle(line, line.courier.send(attempt))

    def _finish(self, line: _Line) -> None:
        """Send the held letter's content and record every answer read: before waiting, or giving the line up."""
        if line.courier is not None:
            self._settle(line, line.courier.flush())
        line.write_down(self.ledger)

    def _settle(self, line: _Line, settled: list[tuple[Letter, Result]]) -> None:
        """Record how each letter went, and give its job back to the queue."""
        if line.courier is not None and line.courier.broken:  # lost, or closing: the next letter needs another
            self._drop(line)
        for letter, result in settled:
            assert isinstance(letter, _Attempt)
            self._record(line, letter, result)
        if not line.holding:  # no write (and commit) is about to come
            line.write_down(self.ledger)

    def _record(self, line: _Line, attempt: _Attempt, result: Result) -> None:
        job = attempt.job
        row = job.row
        if isinstance(result, str):
            line.unrecorded.append(Mark(row.id, DeliveryState.SENT, result, attempt=True, content=self.content))
            self._count(ok=True, reply=result)
            self.pace.delivered(attempt.started, self._open)
            self._work.done(job)
            return
        if isinstance(result, Unanswered):
            # The message went out but no answer came back: the server may
            # have it. Sending again could mail this person twice.
            self.ledger.mark(row.id, DeliveryState.SENDING, f"uncertain: {result}", attempt=True)
            self._count(ok=False, reply=str(result), uncertain=True)
            self._work.done(job)
            return
        asked = slowdown(result.code, result.reply)
        if asked is Slowdown.CONNECTIONS:  # one connection too many: this one goes (a lost one went already)
            self._finish(line)
            self._drop(line)
        self._refused(job, result, asked, attempt.started)

    def _compose(self, job: _Job) -> bool:
        """Make the job's message and envelope sender, at its first attempt; False (done with) if it cannot be made."""
        row = job.row
        try:
            job.message = self.composer.personalise(Recipient(row.email, row.name, row.fields), self.secret).message()
        except NewsletterError as exc:
            self.ledger.mark(row.id, DeliveryState.FAILED, str(exc), attempt=True)
            self._count(ok=False, reply=str(exc))
            self._work.done(job)
            return False
        job.sender = self.sender_address
        if self.bounce_address:
            job.sender = return_path(self.bounce_address, self.secret, row.id, self.identity)
        job.delay = self.options.retry_delay
        return True

    def _refused(self, job: _Job, exc: Refused, asked: Slowdown | None, started: float) -> None:
        """Record a refusal of `job` and give it back to the queue: to be tried again, or done with."""
        row, reply = job.row, exc.reply
        if asked is Slowdown.QUOTA:  # nothing will go before the quota is renewed: stop, resumable
            self.ledger.mark(row.id, DeliveryState.PENDING, reply, attempt=True)
            self._work.done(job)
            self._halt(f"the relay's sending quota is used up ({reply})")
            return
        if asked is not None and self.pace.stalled():
            self.ledger.mark(row.id, DeliveryState.PENDING, reply, attempt=True)
            self._work.done(job)
            minutes = STALLED_AFTER / 60
            self._halt(
                f"the relay has taken nothing for {minutes:g} minutes and still asks to slow down ({reply}); "
                "everyone not sent is pending: run the same command later to carry on"
            )
            return
        if asked is not None and job.slowed < FREE_SLOWDOWNS and not self.stop.is_set():
            # Not the recipient's failure, so not one of its attempts (unless the relay never lets up).
            job.slowed += 1
            if asked is Slowdown.RATE:
                self.pace.too_fast(started)
            else:
                self.pace.too_many_connections()
            self.ledger.mark(row.id, DeliveryState.PENDING, reply)
            with self._lock:
                self.outcome.slowed += 1
            wait = min(MOST_DELAY, self.options.retry_delay * 2 ** (job.slowed - 1))
            self._work.again(job, self.clock.now() + wait)
            return
        job.attempts += 1
        if exc.permanent or job.attempts >= self.options.max_attempts or self.stop.is_set():
            if exc.permanent or not self.stop.is_set():
                final = reply if exc.permanent else f"gave up after {job.attempts} attempts: {reply}"
                self.ledger.mark(row.id, DeliveryState.FAILED, final, attempt=True)
                self._count(ok=False, reply=final)
            else:
                self.ledger.mark(row.id, DeliveryState.PENDING, reply, attempt=True)
            self._work.done(job)
            return
        self.ledger.mark(row.id, DeliveryState.PENDING, reply, attempt=True)
        self._work.again(job, self.clock.now() + job.delay)
        job.delay *= 2

    def _connect(self) -> Courier:
        delay = self.options.retry_delay
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                smtp = connect(self.settings)
            except ConnectFailed as exc:
                if not exc.retry:
                    raise _Fatal(str(exc)) from None
                if self._open > 0:  # refused while others are open: one connection too many, not a server down
                    self.pace.too_many_connections()
                    with self._lock:
                        self.outcome.slowed += 1
                    raise _Crowded(str(exc)) from None
                if attempt == self.options.max_attempts or self.stop.is_set():
                    raise _Fatal(str(exc)) from None
                self._sleep(delay)
                delay *= 2
            except NewsletterError as exc:  # a password smtplib cannot send, and the like
                raise _Fatal(str(exc)) from None
            else:
                with self._lock:
                    self._open += 1
                return Courier(smtp, self.settings)
        raise _Fatal(f"cannot reach {self.settings.address}")

    def _drop(self, line: _Line) -> None:
        """Close the line's connection. A letter still held on it (its content never sent) goes back to the queue for
        another connection; after a stop its row stays pending."""
        courier, line.courier = line.courier, None
        if courier is None:
            return
        if isinstance(courier.held, _Attempt):
            job = courier.held.job
            if self.stop.is_set():
                self._work.done(job)
            else:
                self._work.again(job, self.clock.now())
        courier.close()
        with self._lock:
            self._open -= 1

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
                    self._work.wake()
            self.on_progress(1)

    def _halt(self, why: str) -> None:
        with self._lock:
            if self.outcome.stopped is None:
                self.outcome.stopped = why
            self.stop.set()
        self._work.wake()
