"""The prefetching iterator shared by decoding and the enhance pipeline: order, errors, stopping."""

from __future__ import annotations

import threading
import time

import pytest

from cctvsr.prefetch import Prefetch


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_items_arrive_in_order_and_the_end_of_the_producer_ends_the_iteration() -> None:
    def produce(feed: Prefetch[int]) -> None:
        for i in range(50):
            assert feed.put(i) is True

    with Prefetch(produce, size=2, name="test-prefetch-order") as items:
        assert list(items) == list(range(50))
        assert next(items, None) is None  # stays ended


def test_a_producer_error_is_raised_in_the_consumer_after_what_came_before() -> None:
    def produce(feed: Prefetch[int]) -> None:
        feed.put(1)
        feed.put(2)
        raise KeyError("broken")

    seen = []
    with Prefetch(produce, size=4, name="test-prefetch-error") as items:
        with pytest.raises(KeyError, match="broken"):
            for item in items:
                seen.append(item)
        assert next(items, None) is None
    assert seen == [1, 2]


def test_closing_early_stops_a_producer_blocked_on_a_full_queue() -> None:
    puts: list[bool | None] = []
    finished = threading.Event()

    def produce(feed: Prefetch[int]) -> None:
        i = 0
        while True:
            queued = feed.put(i)
            puts.append(queued)
            if not queued:
                finished.set()
                return
            i += 1

    items = Prefetch(produce, size=2, name="test-prefetch-close")
    assert [next(items), next(items)] == [0, 1]
    deadline = time.monotonic() + 2.0
    while len(puts) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert puts == [True] * 4  # the queue bounds how far it runs ahead: 2 taken, 2 waiting, 1 blocked
    items.close()
    assert finished.is_set() and puts[-1] is False
    assert not threads_named("test-prefetch-close")


def test_without_waiting_a_full_queue_lets_items_go() -> None:
    results: list[bool | None] = []
    offered = threading.Event()

    def produce(feed: Prefetch[int]) -> None:
        results.extend([feed.put(i, wait=False) for i in range(5)])
        offered.set()

    with Prefetch(produce, size=2, name="test-prefetch-drop") as items:
        assert offered.wait(2.0)  # the consumer takes nothing until the producer has offered all five
        assert list(items) == [0, 1]
    assert results == [True, True, None, None, None]


def test_the_stop_event_ends_the_iteration_and_the_producer() -> None:
    stop = threading.Event()
    waited = threading.Event()

    def produce(feed: Prefetch[int]) -> None:
        feed.put(0)
        assert feed.halted(wait=10.0)  # returns as soon as `stop` is set, not after 10 s
        waited.set()

    with Prefetch(produce, size=4, name="test-prefetch-stop", stop=stop) as items:
        assert next(items) == 0
        started = time.monotonic()
        stop.set()
        assert next(items, None) is None
        assert waited.wait(2.0) and time.monotonic() - started < 2.0


def test_a_queue_of_size_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Prefetch(lambda feed: None, size=0, name="test-prefetch-zero")
