"""The standalone web app (trame): ``rfmweb serve`` or :func:`serve`.

- :mod:`.state`: the typed UI state (dataclasses bound to trame's state);
- :mod:`.logic`: controllers (sessions, frame streams, the trame-rca view adapter);
- :mod:`.ui`: the layout (and the small page script that shows and acknowledges frames);
- :mod:`.server`: building and starting the server; :mod:`.cli`: the ``serve`` command;
- :mod:`.security`: Host/Origin and auth-key checks; :mod:`.launcher`: a session process per tab;
  :mod:`.shared`: ``--shared``, where the first tab drives.
"""

__all__ = ["serve"]


def __getattr__(name: str):
    """``serve`` on first use: ``rfmweb --help`` imports :mod:`.cli`, which needs neither trame nor torch."""
    if name != "serve":
        raise AttributeError(f"module 'rfmweb.app' has no attribute {name!r}")
    from .server import serve

    return serve
