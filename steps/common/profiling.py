"""Step timing and TensorFlow profiler traces of a training loop.

`StepTimer` splits each training step into input (the time spent getting the batch from
its generator) and compute (the time from receiving the batch to asking for the next one:
the train step and its bookkeeping). Step 1 also traces the tf.function graph, so it is
reported apart and left out of the per-step means.

`TraceWindow` records a TensorFlow profiler trace of a range of steps into a TensorBoard
log folder (`plugins/profile/<run>/<host>.xplane.pb`, which TensorBoard's Profile tab
reads), and `slowest_operations` sums the trace's TensorFlow operations.
"""

from __future__ import annotations

import contextlib
import glob
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class StepTimer:
    """Input and compute seconds of each item of a loop over `batches(...)`.

    An item is one call of the training function, which may run several steps.
    """

    def __init__(self) -> None:
        self.input_seconds: list[float] = []
        self.compute_seconds: list[float] = []
        self.step_counts: list[int] = []

    def batches(self, iterable: Iterable, steps: Callable[[Any], int] = lambda item: 1):
        """Yield the items of `iterable`, timing how long each takes and what happens between.

        `steps(item)` is the number of training steps that the loop runs on the item.
        """
        iterator = iter(iterable)
        yielded_at = None
        while True:
            requested_at = time.perf_counter()
            if yielded_at is not None:
                self.compute_seconds.append(requested_at - yielded_at)
            try:
                item = next(iterator)
            except StopIteration:
                return
            yielded_at = time.perf_counter()
            self.input_seconds.append(yielded_at - requested_at)
            self.step_counts.append(steps(item))
            yield item

    def summary(self) -> dict:
        """Return the step-time breakdown in milliseconds, without the first call's steps.

        `first_step_ms` is the time of the first call, which builds the graph. That call ran
        `first_call_steps` steps.
        """
        calls = len(self.compute_seconds)
        if calls == 0:
            return {"steps": 0}
        summary = {
            "steps": sum(self.step_counts[:calls]),
            "first_step_ms": 1000 * (self.input_seconds[0] + self.compute_seconds[0]),
            "first_call_steps": self.step_counts[0],
        }
        inputs, computes = self.input_seconds[1:calls], self.compute_seconds[1:]
        counts = self.step_counts[1:calls]
        if not computes:
            return summary
        steps = sum(counts)
        total = sum(inputs) + sum(computes)
        summary.update(
            {
                "ms_per_step": 1000 * total / steps,
                "median_ms_per_step": 1000
                * statistics.median(
                    (i + c) / n for i, c, n in zip(inputs, computes, counts, strict=True)
                ),
                "input_ms_per_step": 1000 * sum(inputs) / steps,
                "compute_ms_per_step": 1000 * sum(computes) / steps,
                "input_share": sum(inputs) / total if total > 0 else 0.0,
            }
        )
        return summary


def parse_step_range(text: str) -> tuple[int, int] | None:
    """Parse "FIRST,LAST" (1-based, inclusive) into a pair; "" means no trace.

    Raises ValueError for anything else.
    """
    if not text:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"invalid step range {text!r}: expected FIRST,LAST, e.g. 5,25")
    first, last = (int(part) for part in parts)
    if not 1 <= first <= last:
        raise ValueError(f"invalid step range {text!r}: expected 1 <= FIRST <= LAST")
    return first, last


class TraceWindow:
    """Trace training steps `first` to `last` (inclusive) with the TensorFlow profiler."""

    def __init__(self, logdir: str, first: int, last: int) -> None:
        self.logdir, self.first, self.last = logdir, first, last
        self.running = False
        self.finished = False
        self.traced_steps = 0
        # The first and last step of the traced calls, once a call is traced.
        self.traced_range: tuple[int, int] | None = None

    @contextlib.contextmanager
    def step(self, number: int, count: int = 1) -> Iterator[None]:
        """Run one call of training steps `number` to `number + count - 1`, inside a trace
        when one of them is in the window. A call is traced whole, except the first call
        (step 1), which builds the graph and is never traced. A window within the first
        call traces the second call instead, so that a trace is always written."""
        import tensorflow as tf

        end = number + count - 1
        # Until a call is traced, any later call that reaches the window starts the trace.
        reaches_window = end >= self.first
        if number > 1 and not self.running and not self.finished and reaches_window:
            os.makedirs(self.logdir, exist_ok=True)
            tf.profiler.experimental.start(self.logdir)
            self.running = True
        if not self.running:
            yield
            return
        # The step markers let TensorBoard's Profile tab show one row per call.
        with tf.profiler.experimental.Trace("train", step_num=number, _r=1):
            yield
        self.traced_steps += count
        first_traced = self.traced_range[0] if self.traced_range else number
        self.traced_range = (first_traced, end)
        if end >= self.last:
            self.close()

    def close(self) -> None:
        """Stop the trace, which writes it, if it is still running (fewer steps than `last`)."""
        import tensorflow as tf

        if self.running:
            tf.profiler.experimental.stop()
            self.running = False
            self.finished = True


def slowest_operations(logdir: str, top: int = 10) -> list[dict]:
    """Return the `top` TensorFlow operations of the newest trace under `logdir`, by total time.

    Each entry has the operation's name and type, its total milliseconds over the traced
    steps, how often it ran, and its share of the time of all operations. TensorFlow's
    executor names each operation event "name:type" on the host plane's threads.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    traces = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not traces:
        return []
    space = xplane_pb2.XSpace()
    with open(traces[-1], "rb") as file:
        space.ParseFromString(file.read())
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # Operation events are "name:type". Executor and Python events have no colon, or
                # one followed by a space ("EagerLocalExecute: MatMul").
                if ":" not in name or "::" in name or ": " in name:
                    continue
                totals[name] = totals.get(name, 0.0) + event.duration_ps / 1e9
                counts[name] = counts.get(name, 0) + 1
    all_operations = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:top]
    return [
        {
            "name": name.rsplit(":", 1)[0],
            "type": name.rsplit(":", 1)[1],
            "total_ms": milliseconds,
            "count": counts[name],
            "share": milliseconds / all_operations if all_operations else 0.0,
        }
        for name, milliseconds in ranked
    ]
