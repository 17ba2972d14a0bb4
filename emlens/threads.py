"""How many CPU threads torch uses: a choice that fits small models on shared machines.

torch starts with one intra-op thread per logical CPU. For the small models emlens runs on
a CPU (the pocket organism, tiny test models) that is rarely the fastest choice, and on a
machine whose cores are busy with other work it is much the slowest: the threads wait for
each other at every operation. Measured on this project's 2-core build machine (see
README.md): the demo took 605 s with torch's default of 2 threads while three other jobs
ran, and 85 s with 1 thread.

:func:`auto_threads` picks a count from what is idle now; :func:`set_threads` applies it
(or a count you give). The ``emlens`` command calls ``set_threads`` before every command
(``emlens --threads N ...`` overrides it); notebooks and scripts call
``emlens.set_threads()`` once at the top.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from .errors import InputError

__all__ = ["set_threads", "auto_threads", "physical_cores"]

log = logging.getLogger(__name__)

#: the most threads :func:`auto_threads` picks unless asked for more: beyond two, small
#: models gain little and lose much when other work shares the cores.
DEFAULT_MAX = 2


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once).

    Reads the CPU topology under ``/sys`` (Linux); elsewhere, or when it cannot be read,
    the number of logical CPUs.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topo.joinpath("physical_package_id").read_text().strip(),
                       topo.joinpath("core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def auto_threads(max_threads: int | None = DEFAULT_MAX) -> int:
    """The thread count :func:`set_threads` uses when given none.

    Rules, in order:

    1. ``OMP_NUM_THREADS`` or ``EMLENS_THREADS`` set in the environment (a positive
       integer) wins: the user already chose.
    2. Otherwise the physical cores that are idle now, rounded: cores minus the 1-minute
       load average of the machine, at least 1 (on Windows, where there is no load
       average, all cores), and at most ``max_threads`` (2 by default; ``None`` for no
       cap, e.g. a 7B model on a large CPU).

    Example:
        >>> 1 <= auto_threads() <= 2
        True
    """
    for var in ("EMLENS_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                n = 0
            if n >= 1:
                return n
            log.warning("%s=%r is not a positive integer; ignored", var, value)
    cores = physical_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    n = max(1, min(cores, math.floor(cores - busy + 0.5)))
    return min(n, max_threads) if max_threads else n


def set_threads(n: int | None = None, *, max_threads: int | None = DEFAULT_MAX) -> int:
    """Set torch's intra-op CPU thread count; returns the count set.

    Args:
        n: threads to use; ``None`` chooses with :func:`auto_threads` (idle physical cores,
            at most ``max_threads``; ``OMP_NUM_THREADS`` or ``EMLENS_THREADS`` if set).
        max_threads: the cap of the automatic choice (ignored when ``n`` is given).

    Raises:
        InputError: ``n`` is not a positive integer.

    Example:
        >>> import emlens
        >>> emlens.set_threads(1)
        1
        >>> import torch; torch.get_num_threads()
        1
    """
    import torch

    if max_threads is not None and (isinstance(max_threads, bool)
                                    or not isinstance(max_threads, int) or max_threads < 1):
        raise InputError(f"max_threads must be a positive integer or None, got "
                         f"{max_threads!r}")
    if n is None:
        n = auto_threads(max_threads)
    elif isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"threads must be a positive integer, got {n!r}; pass e.g. 1 or 2, "
                         f"or None to choose from the idle cores")
    torch.set_num_threads(int(n))
    log.info("torch uses %d CPU thread(s)", n)
    return int(n)
