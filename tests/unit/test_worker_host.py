"""Inside a worker: the status publisher's rate limit, and the start-up heap taken out of the collector."""

from __future__ import annotations

import gc
from typing import Any

from app.runtime.worker_host import STATUS_INTERVAL_S, StatusPublisher, settle_heap


def test_status_is_due_once_an_interval_after_the_last_push_or_at_once_on_a_new_state() -> None:
    shared: dict[str, Any] = {}
    status = StatusPublisher(shared, "tracker-1:tracker")
    status.set(push=True, state="tracking", fps=90.0)
    pushed_at = status._last_push
    assert shared["tracker-1:tracker"]["fps"] == 90.0

    assert not status.due(pushed_at + 0.5 * STATUS_INTERVAL_S)
    assert not status.due(pushed_at + 0.5 * STATUS_INTERVAL_S, "tracking")
    assert status.due(pushed_at + 0.5 * STATUS_INTERVAL_S, "stopped")
    assert status.due(pushed_at + STATUS_INTERVAL_S)


def test_settle_heap_takes_start_up_objects_out_of_the_collected_generations() -> None:
    start_up_state = [{"row": index} for index in range(1000)]
    assert any(tracked is start_up_state for tracked in gc.get_objects())
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(start_up_state)
        # A full collection no longer walks them: they are in the permanent generation.
        assert not any(tracked is start_up_state for tracked in gc.get_objects())
    finally:
        gc.unfreeze()
