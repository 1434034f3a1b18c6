"""One ADS stream's session: its receive loop, its send loop, and the send loop's steps run
without its task.

The session owns a stream once it is authenticated and its proxy's watch is open
(:func:`.stream.run_stream` does that). The two loops are two tasks (:meth:`Session.run`):

* the receive loop applies every request to the state machine (ACK/NACK accounting and
  subscriptions) and, when a request created work, pokes the watch the send loop waits on;
* the send loop waits for the proxy to be known, then alternates between waiting (for the
  engine's change notice or the receive loop's poke: one wake-up path) and sending one wake-up's
  responses, awaiting the transport for each. A slow proxy only slows its own send loop: the
  engine never waits for it, and changes pile up in the watch as a coalescing set of names.

A change that finds the send loop parked (waiting, nothing left to send) is not handed to its
task: the session queues one *send step* (:mod:`.send_steps`), and all the steps queued in a
loop turn run in one callback, each doing exactly what the loop would do on waking (take the
changes, build, write) as long as every write completes at once (``send_now``). In a fan-out
every connected proxy gets one change, and waking its task for it (a future, a task step, the
coroutine chain resumed and parked again) was the largest share of the send that was neither
transport nor the protocol's own work. Whenever the step cannot finish synchronously (a write
would wait, the Dataplane is gone, anything fails) it hands over to the task, which does the
rest as before: the task path stays the reference, the step a shortcut through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, cast

from kuma.xds.composite import CompositeWatch
from kuma.xds.source import Changes, ProxyWatch
from kuma.xds.types import SHORT_NAMES

from .acks import Reply
from .authn import StreamGrant
from .delta import Desired
from .direct_send import send_now
from .incoming import TypeFilter, receive_request
from .node import InvalidRequest
from .observer import (
    PropagationObserver,
    StaleReplyObserver,
    StreamObserver,
    has_hook,
)
from .send_steps import STEPS
from .service import ServerStream
from .waiting import WaitTicket
from .wire import WireResponse

log = logging.getLogger(__name__)

#: How many names of a NACKed response the log line shows.
_NAMES_LOGGED = 10


class ProtocolState(Protocol):
    """What both :class:`~.delta.DeltaProtocol` and :class:`~.sotw.SotwProtocol` offer."""

    @property
    def has_work(self) -> bool: ...

    def handle_request(self, request: Any) -> Reply | None: ...

    def resources_changed(self, changes: Mapping[str, Iterable[str]]) -> None: ...

    def build_responses(self, desired: Desired) -> list[Any]: ...


def _is_known(watch: ProxyWatch) -> bool:
    """``watch.known`` read afresh (a Dataplane can be deleted while its proxy is served)."""
    return watch.known


class Session:
    __slots__ = (
        "_composite",
        "_failure",
        "_node_id",
        "_observer",
        "_parked",
        "_propagation",
        "_since",
        "_stale",
        "_state",
        "_step_due",
        "_stream",
        "_ticket",
        "_types",
        "_unsent",
        "_watch",
        "error",
        "revoked",
    )

    def __init__(
        self,
        stream: ServerStream,
        state: ProtocolState,
        watch: ProxyWatch,
        observer: StreamObserver,
        node_id: str,
        types: TypeFilter,
        ticket: WaitTicket | None = None,
    ) -> None:
        self._ticket = ticket
        self._stream = stream
        self._types = types
        self._state = state
        self._watch = watch
        self._observer = observer
        self._stale = (
            cast(StaleReplyObserver, observer) if has_hook(observer, StaleReplyObserver) else None
        )
        self._propagation = (
            cast(PropagationObserver, observer) if has_hook(observer, PropagationObserver) else None
        )
        self._node_id = node_id
        self.error: InvalidRequest | None = None
        #: Why the stream's grant ended (token expired or revoked), if it did.
        self.revoked: str | None = None
        #: When the oldest change taken but not yet followed by a response reached the control
        #: plane (it travels with the change notice: ``Changes.since``).
        self._since: float | None = None
        #: The watch, if its changes come to :meth:`_changed` (set by :meth:`run`).
        self._composite: CompositeWatch | None = None
        #: The send loop waits for changes with nothing left to do: a step may do its work.
        self._parked = False
        self._step_due = False
        #: What a step left to the send loop's task: the responses it could not write, or
        #: the error it raised.
        self._unsent: list[Any] | None = None
        self._failure: BaseException | None = None

    async def run(self, grant: StreamGrant) -> None:
        """Receive in the stream's own task and send in one more: when the client is done (or
        breaks the protocol) the send loop is cancelled; when the send loop fails, the
        receive is interrupted and its error raised here; when the grant ends, both stop.

        Two plain asyncio tasks, not an anyio task group: a task group, its cancel scopes and
        anyio's per-task handle cost ~4 KB and ~55 µs of setup and teardown per connected
        proxy (benchmarks/RESULTS.md), for the one structure written out below.
        """
        receiving = asyncio.current_task()
        assert receiving is not None
        watch = self._watch
        if isinstance(watch, CompositeWatch) and watch.intercept(self._changed):
            self._composite = watch
        sending = asyncio.get_running_loop().create_task(self._send_loop())
        interrupt = _Interrupt(receiving)

        def end_with_grant(reason: str) -> None:
            self.revoked = reason
            sending.cancel()
            interrupt()

        def send_loop_ended(task: asyncio.Task[None]) -> None:
            interrupt()  # it never returns: it failed, or was cancelled with the stream

        # Callbacks, not a task waiting for the grant: one task and one event less per
        # connected proxy (``on_end`` calls back at once if the grant has already ended).
        sending.add_done_callback(send_loop_ended)
        grant.on_end(end_with_grant)
        try:
            await self._receive_loop()
        except asyncio.CancelledError:
            if not interrupt.absorbed():
                raise  # cancelled from outside: the connection went, or kuma-cp stops
        finally:
            interrupt.close()  # a grant ending from now on must not cancel the wait below
            sending.remove_done_callback(send_loop_ended)
            sending.cancel()
            # The watch and the state machine are closed after this returns: the send loop
            # must be over by then.
            await asyncio.wait((sending,))
            if self._composite is not None:
                self._composite.intercept(None)
        if not sending.cancelled() and (error := sending.exception()) is not None:
            raise error

    async def _receive_loop(self) -> None:
        try:
            while (request := await receive_request(self._stream)) is not None:
                self._handle(request)
        except InvalidRequest as error:
            self.error = error
        # The client closed its side, or broke the protocol: either way the stream is over.

    def _handle(self, request: Any) -> None:
        if not self._types.served(request):
            return
        state = self._state
        reply = state.handle_request(request)
        if reply is not None:
            self.observe(reply)
        if state.has_work:
            self._watch.poke()  # wakes the send loop if it waits, else its next wait is short

    def observe(self, reply: Reply) -> None:
        if reply.stale:
            # Forged, repeated or too old: logging each at warning would let any client write
            # the log; counting it as an ACK or NACK would let it write the insights.
            log.debug(
                "ignoring a reply of %s for %s to nonce %r, which this stream did not send "
                "or was already answered",
                self._node_id,
                SHORT_NAMES.get(reply.type_url, reply.type_url),
                reply.nonce[:64],
            )
            if self._stale is not None:
                self._stale.on_stale_reply(self._node_id, reply.type_url, reply.nonce)
            return
        if reply.error is None:
            self._observer.on_ack(self._node_id, reply.type_url, reply.nonce)
            return
        names = reply.names
        shown = ", ".join(names[:_NAMES_LOGGED])
        if len(names) > _NAMES_LOGGED:
            shown += f" and {len(names) - _NAMES_LOGGED} more"
        log.warning(
            "NACK from %s for %s (nonce %s) of [%s]: %s",
            self._node_id,
            SHORT_NAMES.get(reply.type_url, reply.type_url),
            reply.nonce,
            shown,
            reply.error,
        )
        self._observer.on_nack(self._node_id, reply.type_url, reply.nonce, reply.error)

    async def _send_loop(self) -> None:
        watch = self._watch
        state = self._state
        # Until its Dataplane exists the proxy waits (it does not fail): requests still
        # accumulate subscriptions, and nothing is sent.
        while not watch.known:
            await watch.wait_for_changes()
            self._since = _oldest(self._since, watch.take_changes())
        if self._ticket is not None:
            self._ticket.release()
        # Whatever changed so far is irrelevant: every type is read in full on its first build.
        self._since = _oldest(self._since, watch.take_changes())
        held = False
        while True:
            if self._unsent is not None or self._failure is not None:
                await self._take_over()
            self._take_changes()
            if not _is_known(watch):
                # Its Dataplane was deleted while it is connected: as in Kuma, nothing is
                # regenerated and the proxy keeps its last configuration (its traffic goes on).
                # What changed stays marked, to be sent once the Dataplane is back.
                if not held:
                    log.info(
                        "the Dataplane of %s was deleted while it is connected: keeping its last "
                        "configuration until it is back",
                        self._node_id,
                    )
                held = True
            else:
                held = False
                if state.has_work:
                    await self._send(state.build_responses(watch.resources))
                    continue
            # Nothing of the last responses may stay referenced from here: an idle stream
            # waits for as long as nothing changes, and a response holds a copy of every
            # resource it carried (10 KB per proxy at 1,000 idle sidecars).
            self._parked = not held and self._composite is not None
            try:
                await watch.wait_for_changes()
            finally:
                self._parked = False

    async def _send(self, responses: list[Any]) -> None:
        """Send ``responses`` in order, emptying the list as they go. Each response is dropped
        once sent: an idle stream keeps none."""
        while responses:
            response = responses.pop(0)
            # Written at once in the common case (window open, transport not paused): grpclib's
            # five awaits per response are the largest Python share of a fan-out's send.
            if not send_now(self._stream, response):
                await self._stream.send_message(response)
            self._sent(response)

    def _take_changes(self) -> None:
        """The watch's changes into the state machine (their names marked to be sent)."""
        changes = self._watch.take_changes()
        if changes:
            self._state.resources_changed(changes)
            self._since = _oldest(self._since, changes)

    def _sent(self, response: Any) -> None:
        """``response`` is written: count it, and the change pending since ``_since`` counts
        as delivered with it."""
        self._observer.on_response(
            self._node_id, response.type_url, _resource_count(response), response.nonce
        )
        since = self._since
        if since is not None:
            self._since = None
            if self._propagation is not None:
                self._propagation.on_change_delivered(self._node_id, since)

    # --- the send step: the send loop's work without waking its task --------------------------

    def _changed(self) -> None:
        """The watch changed (``CompositeWatch.intercept``): step if the send loop is parked,
        else wake it as the watch would have."""
        if self._parked:
            if not self._step_due:
                self._step_due = True
                STEPS.add(self)
        else:
            assert self._composite is not None
            self._composite.notify()

    def step(self) -> None:
        """What one wake-up of the parked send loop would do, if it can be done without
        waiting; else hand over to the send loop's task (which does the rest)."""
        self._step_due = False
        if not self._parked:
            return  # its task was woken meanwhile (a poke): the change is the task's
        try:
            if self._try_step():
                return
        except BaseException as error:  # raised again in the send loop's task
            self._failure = error
        self._hand_over()

    def _try_step(self) -> bool:
        self._take_changes()
        watch, state = self._watch, self._state
        if not _is_known(watch):
            return False  # the task logs and holds
        if not state.has_work:
            return True
        responses = state.build_responses(watch.resources)
        stream = self._stream
        while responses:
            if not send_now(stream, responses[0]):
                self._unsent = responses
                return False
            self._sent(responses.pop(0))
        return True

    def _hand_over(self) -> None:
        """Wake the send loop's task to finish what the step could not (``_unsent``,
        ``_failure``, or a Dataplane gone). No step runs until the task parks again."""
        self._parked = False
        assert self._composite is not None
        self._composite.poke()

    async def _take_over(self) -> None:
        failure, self._failure = self._failure, None
        unsent, self._unsent = self._unsent, None
        if failure is not None:
            raise failure
        if unsent:
            await self._send(unsent)


class _Interrupt:
    """Cancels the receiving task once, and later tells whether a ``CancelledError`` it
    caught was this interruption alone (so the stream ends normally) or also came from
    outside (so it goes on up)."""

    __slots__ = ("_interrupted", "_task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self._interrupted = False

    def __call__(self) -> None:
        if not self._interrupted:
            self._interrupted = True
            self._task.cancel()

    def absorbed(self) -> bool:
        return self._interrupted and self._task.uncancel() == 0

    def close(self) -> None:
        self._interrupted = True


def _resource_count(response: Any) -> int:
    if type(response) is WireResponse:
        return response.resource_count
    return len(response.resources)


def _oldest(since: float | None, changes: Mapping[str, Iterable[str]]) -> float | None:
    """The older of ``since`` and the arrival time ``changes`` carry (``Changes.since``)."""
    taken = changes.since if isinstance(changes, Changes) else None
    if taken is None:
        return since
    return taken if since is None or taken < since else since
