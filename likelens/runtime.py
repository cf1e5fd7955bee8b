"""Process-wide memory settings for the stages of a batch scan that churn through memory.

Ingest, features and the detectors allocate and free gigabytes of large, short-lived arrays.
By default both glibc (for NumPy) and Arrow's jemalloc hand big blocks back to the kernel on
free and ask for fresh pages on the next allocation; on a virtual machine every first touch of
a page is a fault that can cost more than the work done on it (10 s of system time in a 25 s
scan of 20M events here). Keeping freed memory for reuse during those stages cut their time by
a fifth (detect 4.7 s -> 4.0 s at 20M). Fusion allocates zero-filled arrays (``np.zeros``,
``np.bincount``), which fresh pages give for free and reused memory must clear: it ran 1.4 s
with the defaults and 2.6 s with reuse, so the defaults come back for it.

A short-lived batch process is the right place for this; a library embedded in a long-running
service is not, so only the CLI turns it on (``enable``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters and their defaults (malloc.h)
_M_MMAP_MAX = -4
_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_REUSE = {_M_TRIM_THRESHOLD: 2**31 - 1, _M_MMAP_MAX: 0}

_enabled = False


def enable() -> None:
    """Let ``reusing_freed_memory`` take effect in this process (the CLI calls this), and
    stop NumPy asking for transparent huge pages (``huge_pages``)."""
    global _enabled
    _enabled = True
    huge_pages(False)


def huge_pages(on: bool) -> bool:
    """Whether NumPy asks the kernel for transparent huge pages on large arrays (its default
    on Linux); returns the previous setting. Left alone where the user chose it with
    ``NUMPY_MADVISE_HUGEPAGE``.

    On a 100M-event scan the kernel spent 39-47 s of a 100-105 s run in page faults with huge
    pages and 29-35 s of a 94-99 s run without (two alternating runs each, 2026-12-05): a
    huge page is zeroed whole at its first touch, and the arrays the scan frees in parts
    split them again. At 20M the two are even (15.8, 17.1 s against 16.1, 15.6 s).
    """
    import os

    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # another NumPy layout: keep its default
        return True
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        current = _set_madvise_hugepage(True)
        _set_madvise_hugepage(current)
        return bool(current)
    return bool(_set_madvise_hugepage(on))


def _glibc(name: str, *argtypes: Any) -> Any:
    """glibc's function ``name`` with its argument types, or None where there is none (not
    Linux, or another C library such as musl): callers then leave the defaults."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    return fn


def _mallopt(settings: dict[int, int]) -> bool:
    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    return mallopt is not None and all(bool(mallopt(k, v)) for k, v in settings.items())


@contextmanager
def reusing_freed_memory() -> Iterator[None]:
    """Inside: Arrow on the system allocator, glibc neither trimming nor mapping big blocks on
    their own, so freed memory is reused. A no-op unless ``enable`` was called."""
    if not _enabled:
        yield
        return
    pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    _mallopt(_REUSE)
    try:
        yield
    finally:
        _mallopt(_DEFAULTS)
        pa.set_memory_pool(pool)


def release_freed() -> bool:
    """Hand the free pages of the heap back to the kernel (glibc's ``malloc_trim``), keeping
    the heap itself. A no-op unless ``enable`` was called; False where it did nothing.

    With freed memory kept for reuse, a stage that frees many small blocks (a log's columns,
    a record batch at a time) and then allocates a few big ones (whole-log arrays) cannot
    reuse the holes: the big arrays land past them and RSS is the sum of both. Trimming at
    that turn costs the big arrays' first-touch faults and saves the holes' memory.
    """
    trim = _glibc("malloc_trim", ctypes.c_size_t) if _enabled else None
    return trim is not None and bool(trim(0))
