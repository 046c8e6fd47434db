"""Where numba keeps the compiled kernels when neither the install nor a home folder is writable (a
service account: the server crashed at import with "cannot cache function")."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from rfmweb import numba_cache


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No writable place of numba's own; the temporary directory is ``tmp_path``."""
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba_cache, "_writable", lambda path: False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_private_folder_is_made_when_numba_has_no_place(nowhere):
    folder = numba_cache.fallback_cache_dir()
    assert folder == nowhere / f"rfmweb-numba-{os.getuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert numba_cache.fallback_cache_dir() == folder            # reused by the next process


def test_a_folder_others_may_write_is_never_used(nowhere):
    """numba loads pickles from its cache: a folder planted in /tmp must not be read."""
    planted = nowhere / f"rfmweb-numba-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    folder = numba_cache.fallback_cache_dir()
    assert folder != planted and folder.name.startswith("rfmweb-numba-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_numba_cache_dir_or_a_writable_place_leaves_numba_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert numba_cache.fallback_cache_dir() is None
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert numba_cache._writable(tmp_path / "a" / "b") and numba_cache.fallback_cache_dir(tmp_path) is None
    (tmp_path / "file").write_text("")
    assert not numba_cache._writable(tmp_path / "file" / "x")           # a file where the folder would go
