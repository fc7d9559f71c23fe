"""Prefetch: build the next training batches in a background thread while the step computes.

The train step's tf.function releases the GIL while it runs, so a thread that concatenates
the next batches with numpy works beside it, as `tf.data.Dataset.prefetch` does for a
tf.data pipeline. Items keep their order, so a seeded shuffle gives the same batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")

# How often a blocked producer looks whether the consumer has closed the prefetch.
POLL_SECONDS = 0.1


class Prefetch(Generic[Item]):
    """The items of `iterable`, produced by a background thread up to `depth` items ahead.

    An exception of the iterable is raised by `next` at the item where it happened. Close
    it (or use it as a context manager) to end the thread before the iterable ends.
    """

    _END = object()

    def __init__(self, iterable: Iterable[Item], depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._ended = False
        self._thread = threading.Thread(
            target=self._produce, args=(iter(iterable),), name="prefetch", daemon=True
        )
        self._thread.start()

    def _produce(self, iterator: Iterator[Item]) -> None:
        try:
            for item in iterator:
                if not self._put((item, None)):
                    return
        except BaseException as error:  # noqa: BLE001 - raised again in the consumer
            self._put((self._END, error))
            return
        self._put((self._END, None))

    def _put(self, entry: tuple) -> bool:
        """Queue `entry` unless the consumer closes first; return whether it was queued."""
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetch[Item]:
        return self

    def __next__(self) -> Item:
        if self._ended:
            raise StopIteration
        item, error = self._queue.get()
        if item is self._END:
            self._ended = True
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """End the background thread; later items are dropped."""
        self._closed.set()
        self._thread.join()

    def __enter__(self) -> Prefetch[Item]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
