"""Jupyter widgets (anywidget): :class:`Viewer` (one view) and :class:`Compare` (linked views).

Example (in a notebook)::

    from rfmweb.widgets import Viewer, Compare
    Viewer(volume, preset="CT-Bone")
    Compare.presets(volume, ["CT-Bone", "CT-Muscle"])
"""

from rfmweb.extras import require

require("widgets")  # anywidget: say what to install instead of an ImportError deep inside
from .compare import Compare  # noqa: E402
from .viewer import Viewer  # noqa: E402

__all__ = ["Compare", "Viewer"]
