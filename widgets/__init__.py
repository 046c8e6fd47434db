"""Jupyter widgets (anywidget): :class:`Viewer` (one view) and :class:`Compare` (linked views).

Example (in a notebook)::

    from rfmweb.widgets import Viewer, Compare
    Viewer(volume, preset="CT-Bone")
    Compare.presets(volume, ["CT-Bone", "CT-Muscle"])
"""

from .viewer import Compare, Viewer

__all__ = ["Compare", "Viewer"]
