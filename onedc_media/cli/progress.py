"""The commands' progress bar: one tqdm bar on stderr, fed ``(done, total)`` counts."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(disabled: bool, unit: str = "frame", desc: str | None = None) -> Any:
    """A tqdm bar (units, units/s, ETA) on stderr with an ``update(done, total)`` method;
    ``None`` when *disabled*. tqdm hides it when stderr is not a terminal. A count that
    goes back (the next batch of an encoder's work) starts the bar over."""
    if disabled:
        return None
    from tqdm import tqdm

    class _Bar:
        """Drawn at the first report: an encoder that never reports leaves no trace."""

        def __init__(self) -> None:
            self.bar: Any = None

        def update(self, done: int, total: int | None) -> None:
            if self.bar is None:
                self.bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, leave=False, disable=None)
            if done < self.bar.n:
                self.bar.reset(total)
            if total is not None and self.bar.total != max(total, done):
                self.bar.total = max(total, done)
                self.bar.refresh()
            self.bar.update(done - self.bar.n)

        def close(self) -> None:
            if self.bar is not None:
                self.bar.close()

    return _Bar()
