"""How many threads respsep's own numpy work may use, and an ordered map over them.

The default method's work (filters, FFTs, array arithmetic) runs in numpy and SciPy, which release
the GIL in their loops, so two threads on two cores do nearly twice the work. A batch worker
(``extract DIR -j N``) gets ``cores / N`` threads through ``OMP_NUM_THREADS`` (resp_sep.cli), and
that budget is respected here; a single run uses up to :data:`MAX_THREADS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

#: threads used at most (the work splits in two: ECG and PPG; or blocks of fusion windows)
MAX_THREADS = 2


def cores() -> int:
    """Cores this process may run on: its CPU affinity (what ``taskset``, a SLURM allocation or a
    container's cpuset allows), not the machine's count (``os.cpu_count`` reports all 64 cores of a
    node where a job was given 2)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def budget() -> int:
    """Threads available: ``OMP_NUM_THREADS`` when set (a batch worker's share), else the cores this
    process may use (:func:`cores`), at most MAX_THREADS."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    n = int(env) if env.isdigit() and int(env) > 0 else cores()
    return max(1, min(MAX_THREADS, n))


def ordered_map(fn: Callable, items: Iterable, threads: int | None = None) -> Iterator:
    """``map(fn, items)``, computed by up to ``threads`` threads (``budget()``), results in order.

    At most ``2 * threads`` results are computed ahead of the one being consumed (bounded memory).
    """
    threads = budget() if threads is None else threads
    if threads <= 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="respsep") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def release_memory() -> None:
    """Give the memory freed by large temporaries back to the system (glibc ``malloc_trim``; elsewhere a no-op).

    numpy's freed buffers of a few MB stay in the C heap, so a process whose stages each need a few
    hundred MB of temporaries keeps the largest total it ever held; trimming between stages keeps
    the peak resident memory that of the largest stage.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim`` from the running process's own symbols, or None (another C library)."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
