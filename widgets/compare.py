"""``Compare``: two or more linked views in a notebook (presets, renderers, segmentations, four-up).

The views and their messages are :class:`rfmweb.widgets.viewer._Views`; this module only builds the
sessions each layout needs.
"""

from __future__ import annotations

from typing import Sequence

from rfmweb.errors import InputError
from rfmweb.render.registry import renderer_label
from rfmweb.session import RenderSession, SegmentationViews
from rfmweb.volume import Volume

from .viewer import ViewSource, _session_for, _Views


class Compare(_Views):
    """Two or more views side by side, cameras linked (orbit one, all follow).

    Each view keeps its own preset, renderer and class toggles. Methods take ``view=i`` to address
    one view; without it they apply to every view.

    Args:
        views: Volumes (each gets a new session) or RenderSessions.
        titles: one per view (default: the volume names).
        link: link the cameras (:func:`rfmweb.session.link_cameras`), and the crosshair and annotations.
        link_modes: with ``link``, the views also show the same view mode and slice (``False``: each
            keeps its own plane, as in :meth:`four_up`).
        width, height: size of each canvas in CSS pixels.
        segmentation: the segmentation views these sessions belong to (:meth:`segmentations` sets it:
            correction tools, class and slice styles shared by the views).

    Example:
        >>> Compare.presets(volume, ["CT-Bone", "CT-Muscle"])             # doctest: +SKIP
        >>> Compare([gt_session, renderfm_session], titles=["ray-marched", "Render-FM"])  # doctest: +SKIP
    """

    def __init__(self, views: Sequence[ViewSource], *, titles: Sequence[str] | None = None, link: bool = True,
                 width: int = 384, height: int = 384, segmentation: SegmentationViews | None = None,
                 link_modes: bool = True) -> None:
        views = list(views)
        if len(views) < 2:
            raise InputError(f"Compare needs two or more views, got {len(views)}; use Viewer for one")
        if titles is not None and len(titles) != len(views):
            raise InputError(f"got {len(titles)} titles for {len(views)} views")
        made = [_session_for(v, None, None, width, height) for v in views]
        super().__init__([s for s, _ in made], owned=[o for _, o in made], titles=list(titles or [None] * len(views)),
                         width=width, height=height, arrangement="below", link=link, segmentation=segmentation,
                         link_modes=link_modes)

    @classmethod
    def presets(cls, volume: Volume, presets: Sequence[str], *, renderer: str | None = None, **kwargs) -> "Compare":
        """One view per preset of the same volume, titled by preset."""
        sessions = [RenderSession(volume, renderer=renderer, preset=p, width=kwargs.get("width", 384),
                                  height=kwargs.get("height", 384)) for p in presets]
        kwargs.setdefault("titles", list(presets))
        widget = cls(sessions, **kwargs)
        widget._owned = [True] * len(sessions)
        return widget

    @classmethod
    def segmentations(cls, case_volume: Volume, model=None, *, titles: Sequence[str] | None = None,
                      renderer: str | None = None, width: int = 320, height: int = 320,
                      wait: bool = False) -> "Compare":
        """Ground truth | raw INR | denoised INR of a BraTS case, cameras and slices linked.

        The INR segments on a worker thread (the raw and denoised views show the image until it is
        done; ``wait=True`` blocks instead). Class toggles apply to all three views; Dice (WT, TC,
        ET) against the ground truth shows under the INR views' titles. Corrections: paint on a
        slice view with the correction tool, or script :meth:`mark_stroke` / :meth:`apply_correction`.

        Args:
            case_volume: a 4-channel MR :class:`Volume` (:func:`rfmweb.io.load_brats_case`).
            model: a Neumours INR (default: the shipped weights).
        """
        seg = SegmentationViews(case_volume, model, renderer=renderer, width=width, height=height)
        widget = cls(list(seg.sessions), titles=list(titles or seg.titles), width=width, height=height,
                     segmentation=seg)
        widget._owned = [True] * len(seg.sessions)
        seg.on_status = widget._on_status
        if wait:
            seg.compute()
        else:
            seg.start()
        return widget

    @classmethod
    def renderfm(cls, volume: Volume, *, preset: str | None = None, **kwargs) -> "Compare":
        """Ray-marcher | Render-FM of a CT, cameras linked (needs a Render-FM checkpoint: the shipped
        one or ``$RFMWEB_RENDERFM_CHECKPOINT``). Render-FM predicts its splats on its own thread
        when the view appears and after each preset or class change ("Render-FM: preparing splats").
        """
        from rfmweb.backend import marcher_renderer

        kwargs.setdefault("titles", ["ray-marcher", "Render-FM"])
        return cls.renderers(volume, [marcher_renderer(), "renderfm"], preset=preset, **kwargs)

    @classmethod
    def four_up(cls, volume: Volume, *, renderer: str | None = None, preset: str | None = None, width: int = 320,
                height: int = 320) -> "Compare":
        """3D Slicer's four-up: the 3-D view and axial, coronal and sagittal views of ``volume`` on one
        crosshair (click a point in any view: the others move there); the planes keep their own plane."""
        sessions = [RenderSession(volume, renderer=renderer, preset=preset, width=width, height=height)
                    for _ in range(4)]
        for session, axis in zip(sessions[1:], ("axial", "coronal", "sagittal")):
            session.pin_view_mode(axis)
        widget = cls(sessions, titles=["3-D", "axial", "coronal", "sagittal"], width=width, height=height,
                     link_modes=False)
        widget._owned = [True] * len(sessions)
        return widget

    @classmethod
    def renderers(cls, volume: Volume, renderers: Sequence[str], *, preset: str | None = None, **kwargs) -> "Compare":
        """One view per renderer of the same volume (e.g. ``["raymarch", "vtk"]``), titled by renderer."""
        sessions = [RenderSession(volume, renderer=r, preset=preset, width=kwargs.get("width", 384),
                                  height=kwargs.get("height", 384)) for r in renderers]
        kwargs.setdefault("titles", [renderer_label(r) for r in renderers])
        widget = cls(sessions, **kwargs)
        widget._owned = [True] * len(sessions)
        return widget
