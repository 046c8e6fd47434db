"""The wslink RPCs a page may call: those the trame client and the page use, nothing else.

wslink offers every RPC of trame and trame-rca to every websocket, and some are for the server, not
for a page: ``application.exit`` stops the process (with ``--shared``, the viewer of every tab);
``trame.rca.drop`` with a negative limit makes it drop every frame from then on; ``trame.rca.push``
shows any image in every tab; ``trame.rca.reset`` and ``trame.lifecycle.update("server_exited")``
close the views. :func:`limit_rpcs` ignores those (one log line each) and runs the rest as before;
:class:`~rfmweb.app.shared.DriverGate` narrows them further for a following tab.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

#: RPCs the page calls (trame's client, trame-rca's view, the page script).
PAGE_RPCS = frozenset({"trame.state.get", "trame.state.update", "trame.trigger", "trame.force.push",
                       "trame.error.client", "trame.lifecycle.update", "trame.rca.event", "trame.rca.size",
                       "trame.rca.video.codecs", "trame.rca.video.negotiate"})
#: Life-cycle events a page reports (trame's client sends these; the server's own are not a page's).
PAGE_LIFECYCLE = frozenset({"client_connected", "client_unmounted", "client_exited"})


def page_may_call(uri: str, args: tuple) -> bool:
    """Whether a page may call RPC ``uri`` with ``args``."""
    if uri == "trame.lifecycle.update":
        return bool(args) and args[0] in PAGE_LIFECYCLE
    return uri in PAGE_RPCS


def limit_rpcs(wslink_server) -> None:
    """Wrap every RPC of every websocket handler of ``wslink_server`` (install with
    ``server.controller.on_server_bind.add(limit_rpcs)``)."""
    for handler in getattr(wslink_server, "_ws_handlers", []):
        for uri, (obj, func) in list(handler.functionMap.items()):
            handler.functionMap[uri] = (obj, _limited(uri, func))


def _limited(uri: str, func):
    @functools.wraps(func)
    def limited(obj, *args, **kwargs):
        if not page_may_call(uri, args):
            log.info("ignored the RPC %s: not one a page calls", uri[:80])
            return None
        return func(obj, *args, **kwargs)

    return limited
