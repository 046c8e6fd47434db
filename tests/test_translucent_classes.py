"""A class drawn translucent (class opacity below 1) fades with its surface: the voxels around it that
carry its partial-volume rim are read as its own (:func:`rfmweb.render.fields.surface_owners`), so a
thin bone at opacity 0 is gone, as hidden, instead of staying drawn by its neighbours' labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfmweb import samples
from rfmweb.render.fields import surface_owners
from rfmweb.render.scene import FULL
from rfmweb.session import RenderSession
from rfmweb.transfer import preset

BONE = preset("CT-Bone")


def thin_bone():
    """A one-voxel bone line (1000 HU, label 2) along x in soft tissue (20 HU, label 1)."""
    scalar = torch.full((8, 7, 7), 20.0)
    labels = torch.ones((8, 7, 7), dtype=torch.int64)
    scalar[:, 3, 3], labels[:, 3, 3] = 1000.0, 2
    return scalar, labels


def test_the_rim_of_a_translucent_class_is_read_as_that_class():
    scalar, labels = thin_bone()
    scalar[4, 2, 3], labels[4, 2, 3] = 1000.0, 1          # a bright voxel of another class keeps its label
    scalar[5, 4, 3], labels[5, 4, 3] = 1000.0, 3          # ... unless that class is hidden (faded out)
    out = surface_owners(labels, scalar, BONE, (2,), hidden=(3,))
    ring = torch.zeros_like(labels, dtype=torch.bool)
    ring[:, 2:5, 2:5] = True
    ring[:, 3, 3] = False
    changed = out != labels
    assert torch.equal(out[:, 3, 3], labels[:, 3, 3]), "the bone keeps its own label"
    assert not (changed & ~ring).any(), "only the 26 neighbours of the bone change"
    assert out[4, 2, 3] == 1 and out[5, 4, 3] == 2
    assert (out[ring] == 2).sum() == ring.sum() - 1
    # nothing translucent, or a translucent class the TF does not show: the labels themselves
    assert surface_owners(labels, scalar, BONE, ()) is labels
    assert surface_owners(labels, torch.full_like(scalar, -500.0), BONE, (2,)) is labels


@pytest.fixture(scope="module")
def ribs_views():
    ct = samples.load("ct_phantom", size=96)
    ribs = next(c.index for c in ct.classes if c.name == "ribs")
    s = RenderSession(ct, renderer="raymarch", preset="CT-Muscle", width=128, height=128)
    for group in ("organs", "soft tissue"):
        s.set_class_table(s.classes.set_group_visible(group, False))
    out = {}
    for opacity in (1.0, 0.5, 0.0):
        s.set_class(ribs, opacity=opacity)
        out[opacity] = np.asarray(s.render(FULL), dtype=np.float64)
    s.set_class(ribs, opacity=1.0, visible=False)
    out["hidden"] = np.asarray(s.render(FULL), dtype=np.float64)
    s.close()
    return out


def test_ribs_at_opacity_0_look_hidden_and_fade_on_the_way(ribs_views):
    """The ribs at class opacity 0 stayed drawn (mean difference from opacity 1: 0.8 grey levels, hidden:
    4.4): now opacity 0 is within a quarter of that of hidden, and 0.5 lies between (nearer 1: the class
    opacity scales each sample's opacity, and a bone several samples thick stays dense)."""
    def diff(a, b):
        return float(np.abs(ribs_views[a] - ribs_views[b]).mean())
    full = diff(1.0, "hidden")
    assert full > 2.0, "the ribs are not in the picture"
    assert diff(0.0, "hidden") < 0.25 * full
    assert 0.1 * full < diff(0.5, 1.0) < diff(0.0, 1.0)
