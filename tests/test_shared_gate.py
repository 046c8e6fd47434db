"""``--shared``: the driver gate over wslink's RPCs (``rfmweb.app.shared.DriverGate``), with stand-ins for
wslink's handler and trame's protocol (the browser test drives the real thing)."""

from __future__ import annotations

from types import SimpleNamespace

from rfmweb.app.shared import DriverGate


class Protocol:
    """trame's protocol object as the gated RPCs see it: a state and ``force_push_state``."""

    def __init__(self) -> None:
        values = {"preset": "CT-Bone"}
        self.server = SimpleNamespace(state=SimpleNamespace(has=values.__contains__, values=values))
        self.pushed: list[tuple] = []

    def force_push_state(self, *keys) -> None:
        self.pushed.append(keys)


def gate_over(clients: list[str]):
    """``(web app, handler, protocol)`` with a gated ``trame.state.update`` and ``clients`` connected."""
    protocol = Protocol()

    def update(obj, changes):
        obj.server.state.values.update({c["key"]: c["value"] for c in changes if c["key"] in obj.server.state.values})

    handler = SimpleNamespace(connections=dict.fromkeys(clients), authentified_client_ids=set(clients),
                              functionMap={"trame.state.update": (protocol, update)})
    web = SimpleNamespace(_ws_handlers=[handler], last_active_client_id=None)
    DriverGate().install(web)
    return web, handler, protocol


def call(web, handler, caller: str, value: str) -> None:
    obj, func = handler.functionMap["trame.state.update"]
    web.last_active_client_id = caller               # what wslink does just before an RPC
    func(obj, [{"key": "preset", "value": value}, {"key": "unknown", "value": 1}])


def test_a_drivers_change_is_pushed_to_every_follower():
    """trame forwards a change by a scheduled message that skips whoever is last active when it is
    sent: a follower's frame acknowledgement in between made it skip the follower. The gate pushes a
    driver's change to all tabs itself."""
    web, handler, protocol = gate_over(["a", "b"])
    call(web, handler, "a", "CT-Muscle")
    assert protocol.server.state.values["preset"] == "CT-Muscle" and protocol.pushed == [("preset",)]


def test_a_followers_change_is_not_applied_and_its_control_goes_back():
    web, handler, protocol = gate_over(["a", "b"])
    call(web, handler, "b", "CT-Lung")
    assert protocol.server.state.values["preset"] == "CT-Bone" and protocol.pushed == [("preset",)]


def test_a_lone_tab_changes_without_an_extra_push():
    web, handler, protocol = gate_over(["a"])
    call(web, handler, "a", "CT-Muscle")
    assert protocol.server.state.values["preset"] == "CT-Muscle" and protocol.pushed == []


def test_a_follower_may_only_read_report_and_download():
    """A following tab called ``trame.rca.drop`` (every tab froze) or ``trame.rca.reset``; reads,
    reports and downloads still run."""
    web, handler, protocol = gate_over(["a", "b"])
    ran = []
    for uri in ("trame.rca.drop", "trame.rca.reset", "trame.state.get", "trame.lifecycle.update", "trame.trigger"):
        handler.functionMap[uri] = (protocol, lambda obj, *args, uri=uri: ran.append(uri))
    DriverGate().install(web)
    web.last_active_client_id = "b"
    for uri, args in (("trame.rca.drop", ("view_a", -1)), ("trame.rca.reset", ("view_a",)), ("trame.state.get", ()),
                      ("trame.lifecycle.update", ("client_exited",)), ("trame.trigger", ("rfm_reset_view",)),
                      ("trame.trigger", ("rfm_screenshot", ["view_a"]))):
        obj, func = handler.functionMap[uri]
        func(obj, *args)
    assert ran == ["trame.state.get", "trame.lifecycle.update", "trame.trigger"]
    web.last_active_client_id = "a"
    obj, func = handler.functionMap["trame.rca.reset"]
    func(obj, "view_a")
    assert ran[-1] == "trame.rca.reset", "the driver's calls run (rpcs.limit_rpcs keeps pages to their own)"


def test_tab_ids_are_logged_by_their_first_characters_only(caplog):
    import logging

    ids = ["2c899cb4109c4e4ebf0223e428c75ce0", "7d1f00aa9e3b4c6f8a2b5e9d0c1f2a3b"]
    web, handler, protocol = gate_over(ids)
    with caplog.at_level(logging.INFO, logger="rfmweb"):
        call(web, handler, ids[1], "CT-Lung")
    assert "tab 2c899c drives now" in caplog.text and "was undone (tab 2c899c drives)" in caplog.text
    assert not any(i in caplog.text for i in ids)
