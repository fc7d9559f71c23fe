"""Step timing and profiler traces of steps/common/profiling.py, with real TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tensorflow as tf

from common import profiling


def test_parse_step_range_accepts_pair() -> None:
    assert profiling.parse_step_range("5,25") == (5, 25)
    assert profiling.parse_step_range("3,3") == (3, 3)
    assert profiling.parse_step_range("") is None


@pytest.mark.parametrize("text", ["25,5", "0,4", "5", "a,b", "1,2,3"])
def test_parse_step_range_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="FIRST"):
        profiling.parse_step_range(text)


def test_timer_leaves_out_first_step() -> None:
    timer = profiling.StepTimer()
    seen = [item for item in timer.batches(range(6))]
    assert seen == list(range(6))
    assert len(timer.input_seconds) == 6
    assert len(timer.compute_seconds) == 6
    summary = timer.summary()
    assert summary["steps"] == 6
    assert 0.0 <= summary["input_share"] <= 1.0
    assert summary["ms_per_step"] == pytest.approx(
        summary["input_ms_per_step"] + summary["compute_ms_per_step"]
    )


def test_timer_counts_steps_per_call() -> None:
    timer = profiling.StepTimer()
    calls = [4, 4, 2, 4, 4, 2]
    assert list(timer.batches(calls, steps=lambda steps: steps)) == calls
    summary = timer.summary()
    assert summary["steps"] == 20
    assert summary["first_call_steps"] == 4
    inputs, computes = sum(timer.input_seconds[1:]), sum(timer.compute_seconds[1:])
    assert summary["ms_per_step"] == pytest.approx(1000 * (inputs + computes) / 16)
    assert summary["input_ms_per_step"] == pytest.approx(1000 * inputs / 16)


def test_timer_with_one_step() -> None:
    timer = profiling.StepTimer()
    list(timer.batches([1]))
    summary = timer.summary()
    assert summary["steps"] == 1
    assert "ms_per_step" not in summary


def test_trace_window_writes_operations(tmp_path: Path) -> None:
    weights = tf.Variable(tf.ones([64, 64]))

    @tf.function
    def step(x):
        return tf.reduce_sum(tf.matmul(x, weights))

    window = profiling.TraceWindow(str(tmp_path), 2, 3)
    for number in range(1, 6):
        with window.step(number):
            float(step(tf.ones([32, 64])))
    assert window.traced_steps == 2
    assert not window.running
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))
    operations = profiling.slowest_operations(str(tmp_path))
    assert operations
    assert "MatMul" in " ".join(operation["type"] for operation in operations)
    assert sum(operation["share"] for operation in operations) <= 1.0 + 1e-9
    json.dumps(operations)


def traced_calls(window: profiling.TraceWindow, calls: int, steps_per_call: int) -> list[int]:
    """Run `calls` calls of `steps_per_call` steps; return the first step of each traced one."""
    traced = []
    for number in range(1, calls * steps_per_call + 1, steps_per_call):
        with window.step(number, steps_per_call):
            if window.running:
                traced.append(number)
            tf.constant(1.0) + 1.0
    return traced


def test_trace_window_traces_whole_calls(tmp_path: Path) -> None:
    window = profiling.TraceWindow(str(tmp_path), 5, 9)
    # Calls of 3 steps: 1-3, 4-6, 7-9, 10-12. Steps 5 to 9 are in the calls 4-6 and 7-9.
    assert traced_calls(window, 4, 3) == [4, 7]
    assert window.traced_steps == 6
    assert window.traced_range == (4, 9)


def test_trace_window_skips_first_call(tmp_path: Path) -> None:
    window = profiling.TraceWindow(str(tmp_path), 2, 5)
    # The first call (steps 1 to 3) builds the graph, so tracing starts with steps 4 to 6.
    assert traced_calls(window, 3, 3) == [4]
    assert window.traced_range == (4, 6)
    assert not window.running
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))


def test_window_in_first_call_traces_second(tmp_path: Path) -> None:
    window = profiling.TraceWindow(str(tmp_path), 2, 5)
    # Calls of 7 steps: the window lies in the first call, so the second one is traced.
    assert traced_calls(window, 3, 7) == [8]
    assert window.traced_range == (8, 14)
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))


def test_trace_window_closes_short_loop(tmp_path: Path) -> None:
    window = profiling.TraceWindow(str(tmp_path), 2, 50)
    for number in range(1, 4):
        with window.step(number):
            tf.constant(1.0) + 1.0
    assert window.running
    window.close()
    assert not window.running
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))


def test_no_trace_no_operations(tmp_path: Path) -> None:
    assert profiling.slowest_operations(str(tmp_path)) == []
