"""``--shared``: one viewer for every tab, driven by the first tab that connected; the others follow.

In shared mode all tabs are clients of one trame process, so they see one state. To keep a class
from turning into a tug of war, only the *driver* changes it: the oldest connected tab (when it
leaves, the next oldest takes over). :class:`DriverGate` wraps the wslink RPCs through which a
page changes anything, and answers a follower's call without running it:

- ``trame.state.update`` (a select or a switch): not applied; the current values are pushed back so
  the follower's control snaps back;
- ``trame.trigger`` (buttons): ignored, except downloads (screenshot, scene file, labels);
- ``trame.rca.event`` / ``trame.rca.size`` (drags, wheel, view size): ignored, except frame
  acknowledgements and refresh requests, which every page needs to keep receiving frames;
- any other RPC: ignored, except those that only read or report (:data:`FOLLOWER_RPCS`).
  :func:`rfmweb.app.rpcs.limit_rpcs` keeps every page, the driver's too, to the RPCs a page uses.

wslink tells who is calling: it sets ``last_active_client_id`` on its web app just before it runs
an RPC, on the event loop, and keeps its connections in order of arrival.

A driver's state change is pushed again to every tab: trame sends it on to the other clients by a
scheduled message that skips whichever client was *last active when it is sent*; a follower's frame
acknowledgement in between made that the follower, which then never got the change (its view and
controls stayed behind the driver's).
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

#: Triggers a follower may call (downloads: they change nothing). A student may save the teacher's
#: scene or screenshot; loading a scene is the driver's.
FOLLOWER_TRIGGERS = frozenset({"rfm_screenshot", "rfm_scene", "rfm_segmentation"})
#: Frame-protocol events a follower must send (see :data:`rfmweb.app.ui.CLIENT_SCRIPT`).
FOLLOWER_EVENTS = frozenset({"FrameAck", "Refresh"})
#: RPCs a follower may call as it likes: they read the state or report on the page.
FOLLOWER_RPCS = frozenset({"trame.state.get", "trame.force.push", "trame.error.client", "trame.lifecycle.update",
                           "trame.rca.video.codecs", "trame.rca.video.negotiate"})


class DriverGate:
    """Let only the driver (the oldest connected client) change the shared state.

    Install with ``server.controller.on_server_bind.add(DriverGate().install)``.
    """

    def __init__(self) -> None:
        self._web = None
        self._driver: str | None = None  # the last driver seen, to log a hand-over

    def install(self, wslink_server) -> None:
        """Wrap every RPC of every websocket handler of ``wslink_server``."""
        self._web = wslink_server
        for handler in self._handlers():
            for uri, (obj, func) in list(handler.functionMap.items()):
                handler.functionMap[uri] = (obj, self._gated(uri, func))

    def _handlers(self) -> list:
        return list(getattr(self._web, "_ws_handlers", []))

    def driver(self) -> str | None:
        """The client id of the oldest connected, authenticated client (``None``: nobody)."""
        found = next((c for h in self._handlers() for c in h.connections if c in h.authentified_client_ids), None)
        if found != self._driver and found is not None:
            log.info("shared mode: tab %s drives now (%d connected)", found[:6], self._clients())
        self._driver = found
        return found

    def caller_drives(self) -> bool:
        """Whether the client whose RPC is running is the driver."""
        caller = getattr(self._web, "last_active_client_id", None)
        return caller is None or caller == self.driver()

    def _clients(self) -> int:
        """How many authenticated clients are connected."""
        return sum(sum(c in h.authentified_client_ids for c in h.connections) for h in self._handlers())

    def _gated(self, uri: str, func):
        @functools.wraps(func)
        def gated(obj, *args, **kwargs):
            if self.caller_drives():
                result = func(obj, *args, **kwargs)
                if uri == "trame.state.update" and self._clients() > 1:
                    obj.force_push_state(*_state_keys(obj, args))     # every follower gets it (module docstring)
                return result
            if self._harmless(uri, args):
                return func(obj, *args, **kwargs)
            if uri == "trame.state.update":
                keys = _state_keys(obj, args)
                log.info("shared mode: a following tab's change of %s was undone (tab %s drives)",
                         ", ".join(keys) or "an unknown state key", (self._driver or "")[:6])
                obj.force_push_state(*keys)  # the follower's control goes back to the shared value
            else:
                log.debug("ignored %s from a follower (shared mode: the first tab drives)", uri[:80])
            return None

        return gated

    @staticmethod
    def _harmless(uri: str, args: tuple) -> bool:
        if uri in FOLLOWER_RPCS:
            return True
        if uri == "trame.trigger":
            return bool(args) and args[0] in FOLLOWER_TRIGGERS
        if uri == "trame.rca.event":
            return len(args) >= 3 and isinstance(args[2], dict) and args[2].get("type") in FOLLOWER_EVENTS
        return False


def _state_keys(obj, args: tuple) -> list[str]:
    """The known state keys a ``trame.state.update`` call names (``args[0]``: ``[{key, value}]``)."""
    if not args or not isinstance(args[0], list):
        return []
    return [c.get("key") for c in args[0] if isinstance(c, dict) and obj.server.state.has(c.get("key"))]
