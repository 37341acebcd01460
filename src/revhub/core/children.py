"""Child processes of an API process (the lead-capture process, the embedded worker)."""

from __future__ import annotations

from multiprocessing.process import BaseProcess


def end_child(child: BaseProcess, timeout: float) -> None:
    """Wait up to ``timeout`` for a child already told to exit (it finishes the work in
    hand first), then kill it: a stuck child must not keep its parent from stopping."""
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
