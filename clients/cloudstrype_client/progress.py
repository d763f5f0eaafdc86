"""Progress bars for transfers: one overall bar (bytes, rate, ETA, files done) and, for big files,
one bar per file while it moves. Bars go to stderr, only when stderr is a terminal and -q was not
given; messages (resuming, failures) go to stderr unless -q, and never garble a bar."""
from __future__ import annotations

import sys
import threading
import time

from cloudstrype_client.display import shown

# Files at least this big get a bar of their own (when bars are shown at all).
FILE_BAR_MIN = 8 * 1024 * 1024


def _format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def human_size(n: int | None) -> str:
    """A byte count for people; one no disk holds (a server's figure gone wrong) is shown as
    it is, not a crash."""
    if n is None:
        return "-"
    if not isinstance(n, (int, float)) or isinstance(n, bool) or not 0 <= n < 2 ** 70:
        return f"{n} B"
    return _format_size(float(n))


class _NoBar:
    """What stands for the overall bar when none is drawn."""

    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    def __init__(self, verb: str, total_bytes: int, total_files: int, *, quiet: bool = False,
                 bars: bool | None = None):
        self.verb = verb
        self.quiet = quiet
        self.bars = (not quiet) and (sys.stderr.isatty() if bars is None else bars)
        self.total_files = total_files
        self.files_done = 0
        self.bytes_done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        if self.bars:
            # Imported only when bars are drawn: tqdm is slow to import.
            from tqdm import tqdm
            self.overall = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                                desc=verb, file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                                position=0, leave=True)
            self.overall.set_postfix_str(f"0/{total_files} files")
        else:
            self.overall = _NoBar()

    def file_bar(self, name: str, size: int):
        if not self.bars or size < FILE_BAR_MIN:
            return None
        from tqdm import tqdm
        name = shown(name)
        label = name if len(name) <= 30 else "…" + name[-29:]
        return tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                    file=sys.stderr, leave=False, dynamic_ncols=True, smoothing=0.1)

    def advance(self, nbytes: int, bar=None) -> None:
        with self._lock:
            self.bytes_done += nbytes
            self.overall.update(nbytes)
        if bar is not None:
            bar.update(nbytes)

    def skip(self, nbytes: int, bar=None) -> None:
        """Bytes that need no transfer (parts a resumed upload already has): they fill the bars
        but do not count towards the rate."""
        with self._lock:
            self.overall.update(nbytes)
        if bar is not None:
            bar.update(nbytes)

    def file_done(self, bar=None) -> None:
        if bar is not None:
            bar.close()
        with self._lock:
            self.files_done += 1
            if self.bars:
                self.overall.set_postfix_str(f"{self.files_done}/{self.total_files} files")

    def message(self, text: str, *, always: bool = False) -> None:
        """A line on stderr (errors pass always=True so that -q still shows them)."""
        if self.quiet and not always:
            return
        text = shown(text)              # names in it are the server's, or a sharer's
        if self.bars:
            from tqdm import tqdm
            tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self, summary: bool = True) -> None:
        self.overall.close()
        if summary and not self.quiet:
            elapsed = max(1e-6, time.monotonic() - self.started)
            rate = self.bytes_done / elapsed / 1e6
            print(f"{self.verb}: {self.files_done} of {self.total_files} files, "
                  f"{human_size(self.bytes_done)} transferred in {elapsed:.1f} s "
                  f"({rate:.1f} MB/s)",
                  file=sys.stderr, flush=True)
