"""Stopping cleanly: Ctrl-C and SIGTERM in single runs and in process-pool batches.

A sleep lab stops a night's batch with Ctrl-C, a cluster scheduler with SIGTERM; either way the
run must stop at once, leave no partial or temporary file, print what was finished and exit 130.

* :func:`termination_as_interrupt` makes SIGTERM (and SIGHUP) raise ``KeyboardInterrupt`` in the
  main thread like Ctrl-C does, so the same ``finally`` blocks clean up (temporary outputs are
  deleted by :func:`resp_sep.writers.output_set`).
* :func:`run_pool` runs a batch on worker processes that never see SIGINT (the parent handles
  it: a Ctrl-C reaches the whole process group, and a worker's ``KeyboardInterrupt`` would print
  a traceback and be taken for a failed file). On an interrupt in the parent the queued files are
  cancelled, the workers are told to stop with SIGTERM (their handler deletes their temporary
  files and exits at once), killed if they have not exited within a second, and any temporary
  file they left is removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

#: signals treated like Ctrl-C
TERMINATION_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)
#: the signal received last by :func:`termination_as_interrupt`'s handler (None: none)
received: int | None = None
#: seconds a stopped worker gets to delete its temporary files before it is killed
WORKER_GRACE_S = 0.8
#: seconds between checks for a stop request while waiting for a batch result
POLL_S = 0.1


def _raise_interrupt(signum, frame) -> None:
    global received
    received = signum
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise ``KeyboardInterrupt`` (main thread only; else a no-op)."""
    global received
    received = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = _install(TERMINATION_SIGNALS, _raise_interrupt)
    try:
        yield
    finally:
        _restore(old)


def worker_signals() -> None:
    """Signal handling of a batch worker process (call first in its initializer).

    SIGINT is ignored: the parent decides. SIGTERM (the parent stopping the batch, or a scheduler
    killing the process group) deletes this worker's temporary outputs and exits at once.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGTERM, _worker_exit)  # always: it is how the parent stops a worker
    _install([s for s in TERMINATION_SIGNALS if s != signal.SIGTERM], _worker_exit)


def _worker_exit(signum, frame) -> None:
    from resp_sep.writers import remove_live_temps

    try:
        remove_live_temps()
    finally:
        os._exit(128 + signum)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread: processes started meanwhile inherit the blocked mask.

    A spawned worker therefore cannot get a ``KeyboardInterrupt`` while it starts up, before its
    initializer ignores SIGINT; in the parent the signal stays pending and is delivered (not
    lost) when the block ends.
    """
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class WorkerDied(RuntimeError):
    """A worker process ended abruptly (killed, out of memory) while files were queued."""


def run_pool(fn: Callable, calls: Sequence[tuple], jobs: int, on_result: Callable[[int, object], None],
             initializer: Callable | None = None, initargs: tuple = (),
             on_stop: Callable[[Iterable[int]], None] | None = None) -> None:
    """Run ``fn(*args)`` for every ``args`` in ``calls`` on ``jobs`` spawned worker processes.

    Parameters
    ----------
    fn : callable
        A module-level function (picklable); it should catch its own per-item errors.
    calls : sequence of tuple
        Arguments per item.
    on_result : callable
        ``on_result(index, result)`` in the parent, in submission order.
    initializer, initargs
        Run in each worker after :func:`worker_signals`.
    on_stop : callable, optional
        ``on_stop(worker_pids)`` after an interrupted batch stopped its workers (remove what they
        may have left).

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C/SIGTERM, once the workers are stopped (within about ``WORKER_GRACE_S`` s).
    WorkerDied
        When a worker process died; the items it and the queue held get no result.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    # In the parent, SIGINT/SIGTERM only set a flag, checked between results: an exception raised
    # at an arbitrary point (in the middle of printing a result line) would garble the report.
    stop: list[int] = []
    old = _install({signal.SIGINT, *TERMINATION_SIGNALS}, lambda signum, frame: stop.append(signum))
    ex = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(initializer, initargs))
    pids: set[int] = set()
    try:
        try:
            with _sigint_blocked():
                futs = [ex.submit(fn, *args) for args in calls]
                pids.update(getattr(ex, "_processes", None) or {})
            i = 0
            while i < len(futs):
                if stop:
                    raise KeyboardInterrupt(signal.Signals(stop[0]).name)
                try:
                    res = futs[i].result(timeout=POLL_S)
                except FutureTimeout:
                    continue
                except BrokenProcessPool:
                    time.sleep(2 * POLL_S)  # a scheduler's SIGTERM to the group: the parent's may be on its way
                    if stop:
                        raise KeyboardInterrupt(signal.Signals(stop[0]).name) from None
                    raise WorkerDied("a worker process died (killed, or out of memory)") from None
                on_result(i, res)
                i += 1
        except BaseException:
            pids.update(getattr(ex, "_processes", None) or {})
            _stop(ex)
            if on_stop:
                on_stop(pids)
            raise
        ex.shutdown(wait=True)
    finally:
        _restore(old)


def _install(signals, handler) -> dict:
    """Set ``handler`` for ``signals`` (main thread only); returns the old handlers.

    A signal already ignored when respsep started is left ignored (``nohup`` ignores SIGHUP; a
    shell's background job ignores SIGINT): the user chose that it must not stop the run.
    """
    old = {}
    if threading.current_thread() is not threading.main_thread():
        return old
    for s in signals:
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(s) == signal.SIG_IGN and handler is not signal.SIG_IGN:
                continue
            old[s] = signal.signal(s, handler)
    return old


def _restore(old: dict) -> None:
    for s, h in old.items():
        with contextlib.suppress(OSError, ValueError, TypeError):
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _init_worker(initializer, initargs) -> None:
    worker_signals()
    if initializer is not None:
        initializer(*initargs)


def _stop(ex) -> None:
    """Cancel queued items, stop the workers (SIGTERM, then SIGKILL after the grace time)."""
    old = _install({signal.SIGINT, *TERMINATION_SIGNALS}, signal.SIG_IGN)  # a second Ctrl-C must not cut it short
    try:
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        deadline = time.monotonic() + WORKER_GRACE_S
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            with contextlib.suppress(Exception):
                if p.is_alive():
                    p.kill()
                    p.join(1.0)
    finally:
        _restore(old)
