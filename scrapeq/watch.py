"""Following a task from the command line: a live progress bar on a terminal, plain progress lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Protocol

import scrapeq.client.calls as calls
from scrapeq.client.sync import Client
from shared.models import TaskPublic, TaskStatus

if TYPE_CHECKING:
    from rich.progress import TaskID

#: How long one read of the event feed waits for the next event: also the longest a shown figure lags.
POLL_S = 1.0


class Display(Protocol):
    def update(self, task: TaskPublic) -> None: ...

    def close(self, task: TaskPublic) -> None: ...


def counts(task: TaskPublic) -> str:
    p = task.progress
    return f"done {p.pages_done}, failed {p.pages_failed}, skipped {p.pages_skipped}"


class Lines:
    """One line per change of the figures, at most one a second, then a last line: for logs and pipes."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.shown: tuple[object, ...] | None = None
        self.began = time.monotonic()
        self.printed_at = float("-inf")

    def update(self, task: TaskPublic) -> None:
        p = task.progress
        figures = (task.status, p.pages_done, p.pages_failed, p.pages_skipped)
        now = time.monotonic()
        if figures == self.shown or now - self.printed_at < 1.0:
            return
        self.shown, self.printed_at = figures, now
        rate = p.pages_done / max(now - self.began, 1e-9)
        line = f"task {task.task_id} {task.status.value}: {p.pages_done}/{task.limit} pages ({counts(task)})"
        print(f"{line}, {rate:.1f} pages/s", file=self.out, flush=True)

    def close(self, task: TaskPublic) -> None:
        elapsed = time.monotonic() - self.began
        print(f"task {task.task_id} {task.status.value}: {counts(task)} in {elapsed:.1f} s", file=self.out, flush=True)


class ProgressBar:
    """rich's live bar: pages done of the limit, failed and skipped, pages a second, time left."""

    def __init__(self, out: IO[str]) -> None:
        # Imported here: only a terminal needs it (`scrapeq crawl` checks that it is installed first).
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.console = Console(file=out)
        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pages · {task.fields[others]} · {task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.row: TaskID | None = None
        self.began = time.monotonic()

    def update(self, task: TaskPublic) -> None:
        p = task.progress
        rate = p.pages_done / max(time.monotonic() - self.began, 1e-9)
        others, per_s = f"{p.pages_failed} failed, {p.pages_skipped} skipped", f"{rate:.1f}/s"
        if self.row is None:
            self.bar.start()
            self.row = self.bar.add_task(task.status.value, total=task.limit, others=others, rate=per_s)
        self.bar.update(self.row, completed=p.pages_done, description=task.status.value, others=others, rate=per_s)

    def close(self, task: TaskPublic) -> None:
        self.update(task)
        assert self.row is not None
        if task.status is TaskStatus.COMPLETED and task.progress.pages_done < task.limit:
            # A site smaller than the limit ends below it: the bar ends full at what there was to crawl.
            self.bar.update(self.row, total=task.progress.pages_done)
        self.bar.stop()
        self.console.print(f"task {task.task_id} {task.status.value}: {counts(task)}", highlight=False)


def display_for(out: IO[str] = sys.stdout) -> Display:
    return ProgressBar(out) if out.isatty() else Lines(out)


def follow(client: Client, task_id: str, display: Display, *, timeout_s: float | None = None) -> TaskPublic:
    """Show the task's progress until it ends (long polls of its event feed wake the loop at once when it
    does); `TimeoutError` after `timeout_s`. Ctrl-C reaches the caller: the task keeps running."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    after: str | None = None
    task = client.get(task_id)
    try:
        while task.status not in calls.TERMINAL:
            display.update(task)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} still {task.status.value} after {timeout_s:g} s")
            feed = client.events(task_id, after=after, limit=1000, wait_s=POLL_S)
            after = calls.last_event_id(feed, after)
            task = client.get(task_id)
    except BaseException:
        if isinstance(display, ProgressBar):
            display.bar.stop()
        raise
    display.close(task)
    return task
