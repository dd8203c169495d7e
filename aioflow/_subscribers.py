"""FlowParser's consumers: every terminated(), batches(), stream_events(), chunks() or matches()
call is a subscriber with its own bounded buffer of batches. Subscribers hands each batch to all
of them (a file waits for the slowest, live counts what one had no room for); the iterators
here turn a subscriber's batches into what its call promised."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._engine import Batch
from ._flow import Flow
from ._stream import StreamChunk, StreamMatch, StreamPatterns, batch_events

# terminated() lets other tasks run after this many flows, so a big batch cannot hog the loop.
YIELD_EVERY = 256


@dataclass(slots=True)
class Subscriber:
    """One consumer's buffer: the reader sends batches, the consumer's iterator receives them."""

    send: MemoryObjectSendStream[Batch]
    receive: MemoryObjectReceiveStream[Batch]
    dropped: int = 0  # live: flows this subscriber had no room for
    records: bool = True  # False: it takes matches() alone


class Subscribers:
    """A parser's subscribers. The first one is made on open(), so a file's first flows wait for
    the first consumer instead of being missed; each later take() sees what ends from then on."""

    def __init__(self, buffer_batches: int, live: bool) -> None:
        self.buffer_batches = buffer_batches  # batches each subscriber may hold unread
        self.live = live  # live: never wait for a consumer, count what it had no room for
        self.flows_dropped = 0  # live: ended flows a consumer had no room for
        self.chunks_dropped = 0  # live: stream chunks a consumer had no room for
        self._subscribers: list[Subscriber] = []
        self._first: Subscriber | None = None
        self._ended = False

    def open(self) -> None:
        """Makes the first subscriber (on entering the parser)."""
        self._first = self._subscribe()

    def _subscribe(self) -> Subscriber:
        send, receive = anyio.create_memory_object_stream[Batch](self.buffer_batches)
        sub = Subscriber(send, receive)
        if self._ended:
            send.close()
        self._subscribers.append(sub)
        return sub

    def take(self) -> Subscriber:
        """The subscriber for a new consumer. Raises RuntimeError before open() (outside `async with`)."""
        if self._first is None and not self._subscribers:
            raise RuntimeError("use FlowParser as `async with FlowParser(...) as parser:` first")
        # The first call takes the stream buffered since entry; each later call is a new
        # subscriber that sees what ends from then on.
        sub, self._first = (self._first, None) if self._first is not None else (self._subscribe(), None)
        return sub

    def want_records(self) -> bool:
        """Whether some subscriber reads flow records (not only matches())."""
        return any(sub.records for sub in self._subscribers)

    async def deliver(self, batch: Batch) -> None:
        """Hands the batch to every subscriber; one whose consumer went away is dropped."""
        for sub in list(self._subscribers):
            try:
                if self.live:  # the wire cannot wait: what a consumer has no room for is counted
                    try:
                        sub.send.send_nowait(batch)
                    except anyio.WouldBlock:
                        sub.dropped += batch.count
                        self.flows_dropped += batch.count
                        self.chunks_dropped += batch.chunk_count
                else:  # a file waits for its slowest consumer: nothing is lost
                    await sub.send.send(batch)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                # that consumer went away: end() will not see this subscriber, so its send end is
                # closed here (anyio warns about an unclosed one when it is garbage-collected)
                sub.send.close()
                self._subscribers.remove(sub)

    def end(self) -> None:
        """The source ended: every iterator ends once it has read what is buffered."""
        self._ended = True
        for sub in self._subscribers:
            sub.send.close()

    def close_consumers(self) -> None:
        """Leaving the parser: the consumers' ends close, so nothing buffers for them any more."""
        for sub in self._subscribers:
            sub.receive.close()


class Subscription:
    """A consumer's end of one subscription: closing it (or dropping it) unsubscribes, so a
    consumer that stops iterating never holds a file source paused."""

    def __init__(self, receive: MemoryObjectReceiveStream[Batch]) -> None:
        self._receive = receive

    def __del__(self) -> None:
        self._receive.close()

    async def aclose(self) -> None:
        """Unsubscribes now (idempotent); the iterator then ends."""
        self._receive.close()

    async def _next_batch(self) -> Batch:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None


class BatchStream(Subscription):
    """batches()'s iterator: the batches the reader sends, as they are."""

    def __aiter__(self) -> BatchStream:
        return self

    async def __anext__(self) -> Batch:
        return await self._next_batch()


class FlowStream(Subscription):
    """terminated()'s iterator: flows out of the batches the reader sends."""

    def __init__(self, receive: MemoryObjectReceiveStream[Batch]) -> None:
        super().__init__(receive)
        self._batch: Batch | None = None
        self._index = 0

    def __aiter__(self) -> FlowStream:
        return self

    async def __anext__(self) -> Flow:
        while self._batch is None or self._index >= self._batch.count:
            self._batch = await self._next_batch()
            self._index = 0
        i = self._index
        self._index += 1
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await anyio.lowlevel.checkpoint()  # a batch is thousands of flows: let others run
        return Flow(self._batch, i)


class EventStream(Subscription):
    """stream_events()/chunks()'s iterator: chunks and flows out of the batches, in engine order."""

    def __init__(
        self, receive: MemoryObjectReceiveStream[Batch], flows: bool, data: bool, patterns: StreamPatterns | None
    ) -> None:
        super().__init__(receive)
        self._flows = flows
        self._data = data
        self._patterns = patterns
        self._events: Iterator[StreamChunk | StreamMatch | Flow] = iter(())
        self._count = 0

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamChunk | StreamMatch | Flow:
        while True:
            event = next(self._events, None)
            if event is not None:
                break
            batch = await self._next_batch()
            self._events = batch_events(batch, self._flows, self._data, self._patterns)
        self._count += 1
        if self._count % YIELD_EVERY == 0:
            await anyio.lowlevel.checkpoint()
        return event
