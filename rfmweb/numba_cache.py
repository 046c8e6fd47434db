"""Where numba keeps our compiled CPU kernels (``@numba.njit(cache=True)``), decided before they are defined.

numba writes its cache beside the source (``__pycache__``) or in the user's cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache``). A service account with a read-only install and no home
(systemd ``User=``, ``DynamicUser=``) has neither, and numba then raises ``RuntimeError: cannot
cache function ...`` as the first kernel module is imported: the server did not start. Importing
this module (every kernel module does, before ``import numba``) points numba at a private folder in
the temporary directory in that case (and only then), and logs it; ``$NUMBA_CACHE_DIR`` always wins
(systemd: ``CacheDirectory=rfmweb`` and ``Environment=NUMBA_CACHE_DIR=/var/cache/rfmweb``).

numba's cache files are pickles it loads: the folder is made by this process, mode 0700, and one
that exists with another owner or looser permissions is never used (a fresh ``mkdtemp`` instead).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def _writable(path: Path) -> bool:
    """Whether ``path`` exists writable, or could be made (its nearest existing parent is writable)."""
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _user_cache() -> Path | None:
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:                 # no HOME and no password-database entry
        return None


def _private_dir(path: Path) -> Path:
    """``path`` made (mode 0700) or reused when this user owns it and nobody else may write it; else a
    fresh private folder."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if path.is_dir() and not path.is_symlink() and st.st_uid == os.getuid() and not st.st_mode & 0o077:
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="rfmweb-numba-"))


def fallback_cache_dir(package: Path = Path(__file__).parent) -> Path | None:
    """The folder numba must be told to use, or ``None`` when its own choice works (or
    ``$NUMBA_CACHE_DIR`` is set)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    user = _user_cache()
    if _writable(package / "render" / "__pycache__") or (user is not None and _writable(user / "numba")):
        return None
    return _private_dir(Path(tempfile.gettempdir()) / f"rfmweb-numba-{os.getuid()}")


def _apply() -> None:
    folder = fallback_cache_dir()
    if folder is None:
        return
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if "numba" in sys.modules:           # imported already: its config has read the environment
        sys.modules["numba"].config.CACHE_DIR = str(folder)
    log.info("no writable place for numba's kernel cache (read-only install, no home folder): using %s "
             "(set NUMBA_CACHE_DIR to choose one that lasts)", folder)


_apply()
