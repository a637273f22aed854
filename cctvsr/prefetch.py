"""One producer thread running ahead of its consumer behind a bounded queue: decoding ahead of
detection (`video.read_frames`), and detection ahead of super-resolution (`pipeline.run_enhance`).

The queue is bounded so memory stays flat however far the producer could run ahead; the thread is
a daemon so a stuck producer (a silent camera) never keeps the process alive; an exception in the
producer is re-raised in the consumer, where the caller can handle it; and closing stops the
producer instead of leaving it blocked on a full queue.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

POLL_S = 0.05  # how often a waiting put or get looks whether the other side has gone

_END = object()


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class Prefetch(Generic[T]):
    """Iterates over what `produce(self)` puts, produced in a daemon thread (at most `size` waiting).

    The producer calls `put` and, while waiting between attempts (reconnecting), `halted`; it
    should return once either says the consumer has gone. Its return ends the iteration; an
    exception it raises is re-raised by the consumer's next `next()`. `close()` (also on leaving a
    `with` block) sets `halt`, empties the queue, and joins the thread for up to `join_timeout`
    seconds (None: until it ends). Setting the optional `stop` event ends the iteration and the
    producer as closing does, without the join.
    """

    def __init__(
        self,
        produce: Callable[[Prefetch[T]], None],
        *,
        size: int,
        name: str,
        stop: threading.Event | None = None,
        join_timeout: float | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1 (a queue of size 0 is unbounded)")
        self.halt = threading.Event()  # set once the consumer has closed
        self._stop = stop
        self._items: queue.Queue[object] = queue.Queue(maxsize=size)
        self._join_timeout = join_timeout
        self._produce = produce
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the producer's side -------------------------------------------------------------------

    def halted(self, wait: float = 0.0) -> bool:
        """True once the consumer has gone (closed, or `stop` set); waits up to `wait` seconds for that."""
        deadline = time.monotonic() + wait
        while True:
            if self.halt.is_set() or (self._stop is not None and self._stop.is_set()):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.halt.wait(min(remaining, POLL_S))

    def put(self, item: T, wait: bool = True) -> bool | None:
        """Queue `item`: True once queued; False when the consumer has gone (stop producing); None
        when the queue is full and `wait` is False (a live source lets the item go)."""
        return self._offer(item, wait)

    def _offer(self, item: object, wait: bool = True) -> bool | None:
        while not self.halted():
            try:
                self._items.put(item, timeout=POLL_S) if wait else self._items.put_nowait(item)
                return True
            except queue.Full:
                if not wait:
                    return None
        return False

    def _run(self) -> None:
        try:
            self._produce(self)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._offer(_Failure(exc))
            return
        self._offer(_END)

    # -- the consumer's side -------------------------------------------------------------------

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while True:
            if self._stop is not None and self._stop.is_set():
                raise StopIteration
            try:
                item = self._items.get(timeout=POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._items.empty():
                    raise StopIteration from None  # ended, or failed, and that was already taken
                continue
            if item is _END:
                raise StopIteration
            if isinstance(item, _Failure):
                raise item.error
            return item  # type: ignore[return-value]  # only `put` queues anything else

    def close(self) -> None:
        self.halt.set()
        while True:  # unblock a producer waiting to put, and let go of what it made
            try:
                self._items.get_nowait()
            except queue.Empty:
                break
        self._thread.join(self._join_timeout)

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
