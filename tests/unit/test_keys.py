"""The KV key layout: the task index lists newest first, to the microsecond, old keys included."""

from __future__ import annotations

from shared import keys

BASE_MS = 1_800_000_000_000


def test_tasks_of_one_millisecond_list_newest_first() -> None:
    made = [keys.task_index("tn", BASE_MS, f"{n:032x}", micros=micros) for n, micros in enumerate([5, 0, 999, 42])]
    assert [key.rsplit(":", 1)[1][-1] for key in sorted(made)] == ["2", "3", "0", "1"]  # 999, 42, 5, 0 µs


def test_keys_written_before_microseconds_list_after_every_newer_key() -> None:
    """Version 1 wrote 13 digits of inverted milliseconds: all such tasks are older than any new key."""
    old = f"tenant:tn:tasks:{10**13 - (BASE_MS - 1):013d}:{'a' * 32}"
    new = [keys.task_index("tn", BASE_MS + shift, "b" * 32, micros=micros) for shift in (0, 5) for micros in (0, 999)]
    assert sorted([old, *new])[-1] == old
    assert keys.created_ms_of_index(old) == BASE_MS - 1
    assert [keys.created_ms_of_index(key) for key in new] == [BASE_MS, BASE_MS, BASE_MS + 5, BASE_MS + 5]
