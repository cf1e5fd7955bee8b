"""The CLI's process-wide memory settings: off for a library caller, effective when enabled."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from likelens import runtime


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def test_release_freed_does_nothing_for_a_library_caller(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(runtime, "_enabled", False)
    assert runtime.release_freed() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_freed_hands_back_the_holes_that_reuse_keeps(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """With freed memory kept for reuse, many freed small blocks stay in RSS; a trim gives
    their pages back (what the features stage relies on before its whole-log arrays)."""
    monkeypatch.setattr(runtime, "_enabled", True)
    with runtime.reusing_freed_memory():
        blocks = [np.ones(1 << 17) for _ in range(800)]  # 800 MiB in 1 MiB blocks
        keep = [b for i, b in enumerate(blocks) if i % 50 == 0]  # pins a few pages
        del blocks
        before = _rss_bytes()
        assert runtime.release_freed()
        after = _rss_bytes()
    assert len(keep) == 16
    assert before - after > 400 * 2**20, (before, after)


def test_enable_stops_numpy_asking_for_huge_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's settings turn NumPy's huge-page advice off, unless the user chose it."""
    from numpy._core.multiarray import _set_madvise_hugepage

    monkeypatch.setattr(runtime, "_enabled", False)
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    before = _set_madvise_hugepage(True)
    try:
        runtime.enable()
        assert _set_madvise_hugepage(True) is False  # enable left it off
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        assert runtime.huge_pages(False) is True
        assert _set_madvise_hugepage(True) is True  # the user's choice stands
    finally:
        _set_madvise_hugepage(before)
