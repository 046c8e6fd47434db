"""Sessions: view state -> encoded frames, streamed with flow control (no UI imports)."""

from .encode import Frame, encode_image
from .linking import link_cameras
from .session import RenderSession, Snapshot
from .stream import FrameStream

__all__ = ["Frame", "FrameStream", "RenderSession", "Snapshot", "encode_image", "link_cameras"]
