"""The standalone web app (trame): ``rfmweb serve`` or :func:`serve`.

- :mod:`.state`: the typed UI state (dataclasses bound to trame's state);
- :mod:`.logic`: controllers (sessions, frame streams, the trame-rca view adapter);
- :mod:`.ui`: the layout (and the small page script that shows and acknowledges frames);
- :mod:`.server`: building, securing and starting the server; :mod:`.cli`: the ``serve`` command.
"""

from .server import serve

__all__ = ["serve"]
