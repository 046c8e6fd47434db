"""Typed UI state of the web app (bound to trame's state with ``TypedState``).

Python owns these values: controllers (:mod:`rfmweb.app.logic`) rebuild them from the sessions
after every change, whoever made it, so every connected browser shows the same thing. The only
values a browser writes are the user's choices (renderer, preset, switches); the controllers
validate them before they reach a session and put the session's value back when they are bad.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..render.registry import renderer_label
from ..session.controller import DEFAULT_BRUSH_MM
from ..transfer import ClassTable

#: Order of the grouped toggles; groups not listed here follow alphabetically.
GROUP_ORDER = ("skeleton", "organs", "vessels", "soft tissue", "tumour")

#: Names of the views (also the trame-rca area names): main, compare, the third segmentation view
#: (or the compare difference), and the three planes of the four-up layout.
VIEW_A, VIEW_B, VIEW_C = "view_a", "view_b", "view_c"
VIEW_D, VIEW_E, VIEW_F = "view_d", "view_e", "view_f"
VIEWS = (VIEW_A, VIEW_B, VIEW_C, VIEW_D, VIEW_E, VIEW_F)
#: The four-up layout's plane views: the main view (3-D) and these, crosshair-linked.
PLANE_VIEWS = {VIEW_D: "axial", VIEW_E: "coronal", VIEW_F: "sagittal"}


@dataclass
class ClassRow:
    """One row of the class list: checkbox, colour swatch, opacity slider."""

    index: int = 0
    name: str = ""
    color: str = "#ffffff"
    opacity: float = 1.0
    visible: bool = True
    group: str = ""


@dataclass
class GroupRow:
    """One grouped toggle (on when any class of the group is visible)."""

    name: str = ""
    visible: bool = True


@dataclass
class Choice:
    """An item of a select: ``title`` shown, ``value`` sent back; a ``disabled`` one shows why
    (``subtitle``: e.g. the package to install)."""

    title: str = ""
    value: str = ""
    disabled: bool = False
    subtitle: str = ""


@dataclass
class ViewState:
    """What a view renders (its own renderer and preset) and how it is doing."""

    renderer: str = ""
    preset: str = ""
    status: str = ""
    busy: bool = False
    title: str = ""
    subtitle: str = ""  # e.g. Dice against the ground truth
    probe: str = ""  # under the pointer on a slice: "(x, y, z) mm · 45 HU"
    stale: bool = False  # the image is another renderer's: dimmed until the new one's first frame


@dataclass
class AppState:
    """Everything the layout shows.

    Attributes:
        title: shown in the toolbar (the volume's name).
        view_a, view_b: the main view and the compare view.
        compare: show ``view_b`` beside ``view_a`` (cameras linked).
        segment: ground truth | raw INR | denoised INR in ``view_a`` | ``view_b`` | ``view_c``
            (``rfmweb serve CASE --segment``), with the correction tools.
        view_mode, slice_index, slice_max: 3-D or a slice view (all views alike), and the slice.
        channels, slice_channel: the image channels a view can show (an MR case's sequences; one for a
            CT) and the one shown, in slices and in 3-D (its index, as a string).
        label_overlay, overlay_opacity: draw the label map over slices (greyscale without), and how opaque.
        window_preset, window_presets, window_text: the slices' grey window ("auto", a CT preset, or
            "custom" after a right/ctrl drag) and its readout ("W 400 L 50 HU"); is_ct: HU presets apply.
        measure: the ruler is on (a drag on a slice view measures; off, the rulers go).
        tool: the correction tool is on (drags paint on slices, clicks mark the 3-D view);
            correct_label: what marks say (0 not tumour: erase, 1 NCR, 2 ED, 3 ET); marks: voxels
            marked (pending until Apply or Clear); can_undo: an applied correction to undo; correcting:
            a correction is being applied (Apply, Undo, Clear and the downloads wait); brush_mm: the stroke
            radius, mm; seg_files: the downloads' names, ``{"nii": ..., "dcm": ...}``; correction_note: how
            the last Apply or Undo ended (it stays; the views' status lines move on).
        class_colors: colour voxels by their class instead of the transfer function.
        cinematic: path-trace progressively while the camera rests (``can_cinematic``: Mitsuba is
            installed and there is a volume to trace; else ``cinematic_hint`` says what to install).
        can_renderfm: a Render-FM checkpoint is there and a volume to predict from (the
            "Ray-marcher | Render-FM" compare button shows).
        classes, groups: per-class styles and grouped toggles of the volume's label map.
        renderers, presets: the options of the selects (a preset for another modality, or a renderer
            that cannot run here, is listed disabled with the reason).
        cursor: the crosshair's position ("(x, y, z) mm"; "" before a click); annotation_text: the
            label typed for the next annotation; annotations: the labels shown (numbered).
        grid: the segmentation views in a 2x2 grid instead of one row.
        difference: with compare, a third pane shows |left - right| with SSIM and PSNR.
        linked: with compare, the two views share one camera.
        four_up: the main view beside axial, coronal and sagittal views of the same volume (view_d..f),
            all sharing the crosshair: a click in one moves the others there.
        shared: every tab shows this one viewer (``--shared``): the first tab that connected drives,
            the others follow (their changes are undone); the toolbar says so.
        alert: what the user must read and act on (a scene file that cannot load, and why), shown in
            a snackbar until closed; ``""``: none.
    """

    title: str = "rfmweb"
    view_a: ViewState = field(default_factory=ViewState)
    view_b: ViewState = field(default_factory=ViewState)
    view_c: ViewState = field(default_factory=ViewState)
    view_d: ViewState = field(default_factory=ViewState)
    view_e: ViewState = field(default_factory=ViewState)
    view_f: ViewState = field(default_factory=ViewState)
    compare: bool = False
    segment: bool = False
    view_mode: str = "3d"
    modes: list[Choice] = field(default_factory=list)
    slice_index: int = 0
    slice_max: int = 0
    channels: list[Choice] = field(default_factory=list)
    slice_channel: str = "0"
    label_overlay: bool = False
    overlay_opacity: float = 0.45
    window_preset: str = "auto"
    window_presets: list[Choice] = field(default_factory=list)
    window_text: str = ""
    is_ct: bool = False
    tool: bool = False
    measure: bool = False
    correct_label: str = "0"
    correct_labels: list[Choice] = field(default_factory=list)
    marks: int = 0
    can_undo: bool = False
    correcting: bool = False
    seg_files: dict = field(default_factory=dict)
    correction_note: str = ""
    brush_mm: float = DEFAULT_BRUSH_MM
    class_colors: bool = False
    cinematic: bool = False
    can_cinematic: bool = False
    cinematic_hint: str = ""
    can_renderfm: bool = False
    classes: list[ClassRow] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    renderers: list[Choice] = field(default_factory=list)
    presets: list[Choice] = field(default_factory=list)
    cursor: str = ""
    annotation_text: str = ""
    annotations: list[str] = field(default_factory=list)
    grid: bool = False
    difference: bool = False
    linked: bool = True
    four_up: bool = False
    shared: bool = False
    alert: str = ""


def view_title(session) -> str:
    """What a view draws with, as its title and a layout screenshot's caption say it:
    "Ray-marcher (compiled CPU) · CT-Bone"."""
    return f"{renderer_label(session.renderer_name)} · {session.preset_name}"


def hex_color(color: tuple[float, ...]) -> str:
    """sRGB in [0, 1] -> ``"#rrggbb"``."""
    return "#" + "".join(f"{max(0, min(255, round(float(c) * 255))):02x}" for c in color[:3])


def class_rows(table: ClassTable) -> list[ClassRow]:
    """The class list of a session's class table."""
    return [ClassRow(s.index, s.name, hex_color(s.color), round(float(s.opacity), 3), bool(s.visible), s.group)
            for s in table.styles]


def group_rows(table: ClassTable) -> list[GroupRow]:
    """The grouped toggles of a class table, in :data:`GROUP_ORDER`."""
    names = sorted(table.groups, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), g))
    return [GroupRow(g, any(s.visible for s in table.styles if s.group == g)) for g in names]
