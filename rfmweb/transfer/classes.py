"""Per-class rendering table: colour, opacity and visibility for each label value.

Labels are sampled nearest-neighbour. Two ways to combine a class with the intensity TF:

- ``"modulate"`` (CT anatomy): ``alpha = tf_alpha(I) * opacity[label] * visible[label]``; colour is
  the TF colour, or the class colour when ``use_class_colors``.
- ``"solid"`` (segmentations over MRI): labelled voxels (label > 0) take the class colour and the
  class opacity as-is; unlabelled voxels keep the TF.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import InputError
from ..volume import LabelClass

MODES = ("modulate", "solid")


@dataclass(frozen=True)
class ClassStyle:
    """How one label value renders. ``opacity`` in [0, 1]; ``color`` sRGB in [0, 1]."""

    index: int
    name: str
    color: tuple[float, float, float]
    opacity: float = 1.0
    visible: bool = True
    group: str = ""


@dataclass(frozen=True)
class ClassTable:
    """Styles for the classes of a label map.

    Labels missing from the table render as if unlabelled (visible, opacity 1, TF colour).
    ``hidden_in_scalar``: the scalar a marcher reads already fades the hidden classes out
    (:func:`~rfmweb.render.fields.hide_voxels`); in ``"modulate"`` mode they then keep opacity 1 and
    the TF colour here, so that smooth fade is not cut back to the voxel lattice.
    """

    styles: tuple[ClassStyle, ...] = ()
    mode: str = "modulate"
    use_class_colors: bool = False
    hidden_in_scalar: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"class table mode must be one of {MODES}, got {self.mode!r}")
        for s in self.styles:
            if not 0.0 <= s.opacity <= 1.0:
                raise InputError(f"class {s.name!r}: opacity must lie in [0, 1], got {s.opacity}")
            if len(s.color) != 3 or not all(0.0 <= float(c) <= 1.0 for c in s.color):
                raise InputError(f"class {s.name!r}: colour must be three sRGB values in [0, 1], got {s.color}")

    @classmethod
    def from_classes(cls, classes: tuple[LabelClass, ...], **kwargs) -> "ClassTable":
        """Default styles (visible, opacity 1) for a volume's class table."""
        return cls(tuple(ClassStyle(c.index, c.name, c.color, group=c.group) for c in classes), **kwargs)

    def style(self, index: int) -> ClassStyle:
        """The style of label value ``index``; :class:`InputError` when no class has it."""
        for s in self.styles:
            if s.index == index:
                return s
        raise InputError(f"no class with label {index}; labels are {[s.index for s in self.styles]}")

    def updated(self, index: int, **changes) -> "ClassTable":
        """A copy with one class's style changed (``visible=``, ``opacity=``, ``color=``)."""
        self.style(index)
        return replace(self, styles=tuple(replace(s, **changes) if s.index == index else s for s in self.styles))

    def set_group_visible(self, group: str, visible: bool) -> "ClassTable":
        """Show or hide every class of an anatomical group ("skeleton", "organs", ...)."""
        if not any(s.group == group for s in self.styles):
            raise InputError(f"no class in group {group!r}; groups are {sorted(self.groups)}")
        return replace(self, styles=tuple(replace(s, visible=visible) if s.group == group else s
                                          for s in self.styles))

    @property
    def groups(self) -> set[str]:
        return {s.group for s in self.styles if s.group}

    @property
    def hidden(self) -> tuple[int, ...]:
        """Label values of the hidden classes."""
        return tuple(s.index for s in self.styles if not s.visible)

    @property
    def translucent(self) -> tuple[int, ...]:
        """Label values of the visible classes drawn at an opacity below 1 (``"modulate"`` mode)."""
        if self.mode != "modulate":
            return ()
        return tuple(s.index for s in self.styles if s.visible and s.opacity < 1.0)

    @property
    def is_trivial(self) -> bool:
        """True when the table changes nothing (all visible, opacity 1, TF colours, modulate)."""
        return self.mode == "modulate" and not self.use_class_colors and all(
            (s.visible and s.opacity == 1.0) or self._faded(s) for s in self.styles)

    def _faded(self, s: ClassStyle) -> bool:
        """Whether a hidden class is left to the scalar (``hidden_in_scalar``, modulate mode)."""
        return not s.visible and self.hidden_in_scalar and self.mode == "modulate"

    def lookup(self, max_label: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables indexed by label value.

        Returns:
            ``(rgba [max_label + 1, 4], use_color [max_label + 1])``: class colour and effective
            opacity (``opacity * visible``), and 1 where the class colour replaces the TF colour.
        """
        rgba = torch.ones(max_label + 1, 4, dtype=dtype, device=device)
        use = torch.zeros(max_label + 1, dtype=dtype, device=device)
        for s in self.styles:
            if s.index > max_label or self._faded(s):     # a faded class: opacity 1, TF colour
                continue
            rgba[s.index, :3] = torch.tensor(s.color, dtype=dtype)
            rgba[s.index, 3] = s.opacity if s.visible else 0.0
            if self.mode == "solid":
                use[s.index] = 1.0 if s.index > 0 else 0.0
            elif self.use_class_colors and s.index > 0:
                use[s.index] = 1.0
        return rgba, use
