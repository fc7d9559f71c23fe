"""The background thread that builds the next training batches."""

from __future__ import annotations

import threading

import pytest

from common.prefetch import Prefetch


def test_prefetch_keeps_order() -> None:
    with Prefetch(range(50), depth=3) as items:
        assert list(items) == list(range(50))
        assert list(items) == []


def test_prefetch_runs_ahead() -> None:
    produced = []
    second_built = threading.Event()

    def numbers():
        for number in range(5):
            produced.append(number)
            if number == 1:
                second_built.set()
            yield number

    with Prefetch(numbers(), depth=1) as items:
        assert next(items) == 0
        # The thread builds item 1 while the consumer still works on item 0.
        assert second_built.wait(timeout=60)
        assert produced[:2] == [0, 1]


def test_prefetch_raises_producer_error() -> None:
    def failing():
        yield 1
        raise ValueError("query 7 has no documents")

    with Prefetch(failing()) as items:
        assert next(items) == 1
        with pytest.raises(ValueError, match="query 7 has no documents"):
            next(items)
        with pytest.raises(StopIteration):
            next(items)


def test_prefetch_close_ends_thread() -> None:
    def endless():
        number = 0
        while True:
            yield number
            number += 1

    before = {thread for thread in threading.enumerate() if thread.name == "prefetch"}
    items = Prefetch(endless(), depth=2)
    assert next(items) == 0
    items.close()
    after = {thread for thread in threading.enumerate() if thread.name == "prefetch"}
    assert after == before


def test_prefetch_rejects_zero_depth() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1"):
        Prefetch([], depth=0)
