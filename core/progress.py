"""Progress of long runs (export, import, migrate): a `rich` bar with rate and ETA on a terminal, plain
periodic lines otherwise, nothing when silenced. A reporter never sees memory text, only counts."""

from __future__ import annotations

import sys
import time
from typing import IO, Protocol


class Reporter(Protocol):
    """What a long run tells about itself."""

    def start(self, label: str, total: int | None) -> None:
        """A phase begins; `total` is the expected number of records (None when unknown)."""

    def advance(self, done: int) -> None:
        """`done` more records were handled."""

    def finish(self) -> None:
        """The phase ended."""


class SilentReporter:
    """Reports nothing (the Python API's default)."""

    def start(self, label: str, total: int | None) -> None:
        """Nothing."""

    def advance(self, done: int) -> None:
        """Nothing."""

    def finish(self) -> None:
        """Nothing."""


class LineReporter:
    """One line every `every` seconds (``migrate: 5000/10000 records, 812/s, ETA 6s``) and one at the end."""

    def __init__(self, stream: IO[str], every: float = 5.0) -> None:
        self._stream = stream
        self._every = every
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._shown = -1
        self._began = self._last = time.monotonic()

    def start(self, label: str, total: int | None) -> None:
        """Start counting."""
        self._label, self._total, self._done, self._shown = label, total, 0, -1
        self._began = self._last = time.monotonic()

    def advance(self, done: int) -> None:
        """Count, and print a line when `every` seconds have passed since the last."""
        self._done += done
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._line(now)

    def finish(self) -> None:
        """Print the final line of the phase (unless the last line already said it all)."""
        if self._shown != self._done:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        self._shown = self._done
        elapsed = max(now - self._began, 1e-9)
        rate = self._done / elapsed
        total = f"/{self._total}" if self._total is not None else ""
        eta = ""
        if self._total is not None and rate > 0 and self._done < self._total:
            eta = f", ETA {int((self._total - self._done) / rate)}s"
        print(f"{self._label}: {self._done}{total} records, {rate:.0f}/s{eta}", file=self._stream, flush=True)


class RichReporter:
    """A `rich` progress bar (count, rate, ETA) on the terminal `stream`."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(file=stream), transient=False,
        )
        self._task: object = None
        self._began = time.monotonic()
        self._done = 0

    def start(self, label: str, total: int | None) -> None:
        """Show a new bar."""
        self._progress.start()
        self._began, self._done = time.monotonic(), 0
        self._task = self._progress.add_task(label, total=total, rate="")

    def advance(self, done: int) -> None:
        """Move the bar and refresh the rate."""
        self._done += done
        rate = self._done / max(time.monotonic() - self._began, 1e-9)
        self._progress.update(self._task, advance=done, rate=f"{rate:.0f}/s")  # type: ignore[arg-type]

    def finish(self) -> None:
        """Leave the finished bar on screen."""
        self._progress.stop()


def reporter_for(stream: IO[str] | None = None, *, quiet: bool = False) -> Reporter:
    """The reporter for `stream` (default stderr): rich on a terminal when rich is installed, lines otherwise."""
    if quiet:
        return SilentReporter()
    out = stream or sys.stderr
    if out.isatty():
        try:
            return RichReporter(out)
        except ImportError:
            pass
    return LineReporter(out)
