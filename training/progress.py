"""Progress bars for long jobs: they move with every batch, so a slow epoch still shows life, and they stay
silent where nobody watches (stderr not a terminal: CI logs, pipes, systemd), where a bar's carriage
returns would only fill the log."""

from __future__ import annotations

from tqdm import tqdm


def batches(total: int, desc: str, initial: int = 0, enabled: bool = True) -> tqdm:
    """A bar over ``total`` batches; tqdm's ``disable=None`` turns it off when stderr is not a terminal."""
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", disable=None if enabled else True)
