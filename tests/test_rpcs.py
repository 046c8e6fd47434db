"""Which wslink RPCs a page may call (``rfmweb.app.rpcs``); the browser test calls them for real."""

from __future__ import annotations

from types import SimpleNamespace

from rfmweb.app.rpcs import limit_rpcs


def test_a_page_cannot_stop_the_server_or_its_frames():
    ran = []
    uris = ["application.exit", "application.exit.later", "trame.rca.drop", "trame.rca.push", "trame.rca.reset",
            "trame.lifecycle.update", "trame.state.update", "trame.rca.event", "no.such.rpc"]
    handler = SimpleNamespace(functionMap={u: (None, lambda obj, *args, u=u: ran.append((u, args)) or "ran")
                                           for u in uris})
    limit_rpcs(SimpleNamespace(_ws_handlers=[handler]))

    def call(uri, *args):
        obj, func = handler.functionMap[uri]
        return func(obj, *args)

    for uri in ("application.exit", "trame.rca.reset", "no.such.rpc"):
        assert call(uri, "view_a") is None
    assert call("application.exit.later", 10) is None and call("trame.rca.drop", "view_a", -1) is None
    assert call("trame.rca.push", "view_a", {}, b"") is None
    assert call("trame.lifecycle.update", "server_exited") is None and call("trame.lifecycle.update") is None
    assert ran == []
    assert call("trame.lifecycle.update", "client_exited") == "ran"
    assert call("trame.state.update", [{"key": "preset", "value": "CT-Bone"}]) == "ran"
    assert call("trame.rca.event", "view_a", "x", {"type": "FrameAck"}) == "ran"
    assert [u for u, _ in ran] == ["trame.lifecycle.update", "trame.state.update", "trame.rca.event"]
