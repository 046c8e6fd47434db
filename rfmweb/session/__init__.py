"""Sessions: view state -> encoded frames, streamed with flow control (no UI imports)."""

from .encode import Frame, encode_image
from .linking import link_cameras, link_points, link_view_modes
from .segmentation import SegmentationViews
from .session import VIEW_MODES, RenderSession, Snapshot
from .stream import FrameStream

__all__ = ["VIEW_MODES", "Frame", "FrameStream", "RenderSession", "SegmentationViews", "Snapshot", "encode_image",
           "link_cameras", "link_points", "link_view_modes"]
