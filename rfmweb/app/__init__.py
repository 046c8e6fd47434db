"""The standalone web app (trame): ``rfmweb serve`` or :func:`serve`.

- :mod:`.state`: the typed UI state (dataclasses bound to trame's state);
- :mod:`.logic`: controllers (sessions, frame streams, the trame-rca view adapter);
- :mod:`.ui`: the layout (and the small page script that shows and acknowledges frames);
- :mod:`.server`: building and starting the server; :mod:`.cli`: the ``serve`` command;
- :mod:`.security`: Host/Origin and auth-key checks; :mod:`.launcher`: a session process per tab;
  :mod:`.shared`: ``--shared``, where the first tab drives.
"""

from .server import serve

__all__ = ["serve"]
