"""The wslink RPCs a page may call: those the trame client and the page use, nothing else.

wslink offers every RPC of trame and trame-rca to every websocket, and some are for the server, not
for a page: ``application.exit`` stops the process (with ``--shared``, the viewer of every tab);
``trame.rca.drop`` with a negative limit makes it drop every frame from then on; ``trame.rca.push``
shows any image in every tab; ``trame.rca.reset`` and ``trame.lifecycle.update("server_exited")``
close the views. :func:`limit_rpcs` ignores those (one log line each) and runs the rest, with three
more limits:

- ``trame.state.update`` sets only the app's own state (keys the server declared, never trame's
  ``trame__*``: ``trame__template_main`` is the page's markup, and with ``--shared`` a page that set
  it would run its script in every tab); a malformed call is dropped;
- ``trame.error.client`` (a page's script error) is logged by us, as one escaped line of at most
  :data:`ERROR_CHARS` characters, :data:`ERRORS_PER_MINUTE` a minute at most (a page cannot flood
  or forge log lines);
- an RPC that fails answers the page ``None``, not the traceback wslink would send (paths and
  versions of this machine); the server logs it.

:class:`~rfmweb.app.shared.DriverGate` narrows the RPCs further for a following tab.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Callable

log = logging.getLogger(__name__)

#: RPCs the page calls (trame's client, trame-rca's view, the page script).
PAGE_RPCS = frozenset({"trame.state.get", "trame.state.update", "trame.trigger", "trame.force.push",
                       "trame.error.client", "trame.lifecycle.update", "trame.rca.event", "trame.rca.size",
                       "trame.rca.video.codecs", "trame.rca.video.negotiate"})
#: Life-cycle events a page reports (trame's client sends these; the server's own are not a page's).
PAGE_LIFECYCLE = frozenset({"client_connected", "client_unmounted", "client_exited"})
#: A page's script error is logged cut to this many characters, at most this many a minute.
ERROR_CHARS, ERRORS_PER_MINUTE = 300, 20


def page_may_call(uri: str, args: tuple) -> bool:
    """Whether a page may call RPC ``uri`` with ``args``."""
    if uri == "trame.lifecycle.update":
        return bool(args) and args[0] in PAGE_LIFECYCLE
    return uri in PAGE_RPCS


def page_changes(args: tuple, known) -> list[dict] | None:
    """The changes of a ``trame.state.update`` call (``args[0]``: ``[{"key", "value"}]``) a page may
    make: keys ``known(key)`` says the server declared, not trame's own; ``None`` when malformed."""
    if len(args) != 1 or not isinstance(args[0], list):
        return None
    changes = args[0]
    if not all(isinstance(c, dict) and isinstance(c.get("key"), str) for c in changes):
        return None
    kept = [c for c in changes if not c["key"].startswith("trame__") and known(c["key"])]
    if len(kept) < len(changes):
        refused = [c["key"] for c in changes if c not in kept]
        log.info("ignored a page's change of %d state key(s) it may not set: %s", len(refused),
                 ", ".join(repr(k[:40]) for k in refused[:3]))
    return kept


def limit_rpcs(wslink_server, clock: Callable[[], float] = time.monotonic) -> None:
    """Wrap every RPC of every websocket handler of ``wslink_server`` (install with
    ``server.controller.on_server_bind.add(limit_rpcs)``); ``clock`` (seconds) starts the minutes
    of the script-error log's limit."""
    errors = _ErrorLog(clock)
    for handler in getattr(wslink_server, "_ws_handlers", []):
        for uri, (obj, func) in list(handler.functionMap.items()):
            handler.functionMap[uri] = (obj, errors.log if uri == "trame.error.client" else _limited(uri, func))


def _limited(uri: str, func):
    @functools.wraps(func)
    def limited(obj, *args, **kwargs):
        if not page_may_call(uri, args):
            log.info("ignored the RPC %s: not one a page calls", uri[:80])
            return None
        if uri == "trame.state.update":
            state = getattr(getattr(obj, "server", None), "state", None)
            changes = page_changes(args, state.has if state is not None else lambda _key: True)
            if changes is None:
                log.info("ignored a malformed trame.state.update")
                return None
            if not changes:
                return None
            args = (changes,)
        try:
            result = func(obj, *args, **kwargs)
        except Exception:
            log.warning("the RPC %s failed", uri[:80], exc_info=True)
            return None
        return _quiet(uri, result) if inspect.isawaitable(result) else result

    return limited


async def _quiet(uri: str, awaitable):
    """``await awaitable``; a failure is logged and answered with ``None``."""
    try:
        return await awaitable
    except Exception:
        log.warning("the RPC %s failed", uri[:80], exc_info=True)
        return None


class _ErrorLog:
    """``trame.error.client``: a page's script error, logged escaped, cut and rate-limited."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._minute, self._count = 0, 0

    def log(self, _obj, *args, **_kwargs) -> None:
        minute = int(self._clock() // 60)
        if minute != self._minute:
            self._minute, self._count = minute, 0
        self._count += 1
        if self._count <= ERRORS_PER_MINUTE:
            log.warning("a page reported a script error: %s", ascii(" ".join(map(str, args)))[:ERROR_CHARS])
        elif self._count == ERRORS_PER_MINUTE + 1:
            log.warning("a page reported more than %d script errors this minute; the rest are not logged",
                        ERRORS_PER_MINUTE)
