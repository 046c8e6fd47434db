"""The Python API refuses what it cannot honour with an InputError naming the argument, and fills in
what a user building objects by hand leaves out (a label map's classes)."""

from __future__ import annotations

import numpy as np
import pytest

from rfmweb import RenderSession, Volume
from rfmweb.errors import InputError
from rfmweb.render import Quality


@pytest.mark.parametrize("kwargs, message", [
    ({"step": 0}, "Quality.step must be in 0.05..4.0 voxels, got 0"),        # crashed the compiled marcher
    ({"step": -1}, "Quality.step must be in"),                               # a black image
    ({"step": float("nan")}, "Quality.step must be in"),
    ({"scale": 0}, "Quality.scale must be in (0, 1], got 0"),                # a 1x1 image
    ({"scale": True}, "Quality.scale must be in"),
    ({"step": True}, "Quality.step must be in"),                             # blamed scale
    ({"frames": 0}, "Quality.frames must be a whole number in 1..1024, got 0"),
    ({"frames": 2.5}, "Quality.frames must be a whole number"),
    ({"cubic": 1}, "Quality.cubic must be True or False, got 1"),
])
def test_quality_refuses_what_no_renderer_can_draw(kwargs, message):
    with pytest.raises(InputError) as err:
        Quality(**kwargs)
    assert message in str(err.value)


def test_quality_takes_numpy_numbers():
    q = Quality(scale=np.float32(0.5), step=np.float64(0.25), frames=np.int64(4), cubic=np.bool_(True))
    assert (q.scale, q.step, q.frames) == (0.5, 0.25, 4)


def _volume(**kwargs) -> Volume:
    labels = np.zeros((12, 10, 8), np.uint8)
    labels[3:9, 2:8, 2:6] = 1
    labels[5:7, 4:6, 3:5] = 4
    return Volume(np.where(labels > 0, 300.0, -1000.0).astype(np.float32), np.eye(4), labels=labels, **kwargs)


def test_labels_without_a_class_table_get_one_class_per_value():
    """``Volume(data, affine, labels=...)`` had no classes: "no class with label 1; labels are []"."""
    volume = _volume()
    assert [(c.index, c.name) for c in volume.classes] == [(0, "background"), (1, "label 1"), (4, "label 4")]
    assert len({c.color for c in volume.classes}) == 3
    session = RenderSession(volume, width=32, height=32)
    session.set_class(4, color=(0.0, 0.0, 1.0))
    assert session.classes.style(4).color == (0.0, 0.0, 1.0)


@pytest.mark.parametrize("index, kwargs, message", [
    ("spine", {"visible": False}, "set_class takes a class's label value (a whole number), got 'spine'; the classes "
                                  "are: 0 background, 1 label 1, 4 label 4"),
    (1, {"visible": "no"}, "class visible must be True or False, got 'no'"),   # a truthy string kept it shown
    (1, {"opacity": "half"}, "class opacity must lie in [0, 1], got 'half'"),
    (1, {"opacity": 1.5}, "class opacity must lie in [0, 1], got 1.5"),
])
def test_set_class_refuses_wrong_types(index, kwargs, message):
    session = RenderSession(_volume(), width=32, height=32)
    with pytest.raises(InputError) as err:
        session.set_class(index, **kwargs)
    assert str(err.value) == message
    session.set_class(np.int64(1), visible=np.bool_(False))
    assert session.classes.hidden == (1,)


@pytest.mark.parametrize("shape, channels", [((8, 9, 10, 4), ("a", "b", "c", "d")), ((40, 40, 30, 2), ("intensity",)),
                                             ((40, 40, 30, 3), ("intensity",)), ((40, 40, 30, 1), ("intensity",))])
def test_channels_last_data_is_told_to_move_its_channels(shape, channels):
    with pytest.raises(InputError) as err:
        Volume(np.zeros(shape, np.float32), np.eye(4), modality="MR" if len(channels) > 1 else "CT", channels=channels)
    assert "channels go first ([C, X, Y, Z]): np.moveaxis(data, -1, 0)" in str(err.value)


def test_channels_first_data_gets_no_such_hint():
    with pytest.raises(InputError) as err:
        Volume(np.zeros((2, 8, 9, 10), np.float32), np.eye(4), modality="MR", channels=("a", "b", "c"))
    assert "channels go first" not in str(err.value)


def test_cameras_link_given_as_a_list_or_one_by_one():
    """``link_cameras(a, b)`` raised a bare TypeError; a list was the only way."""
    from rfmweb.session import link_cameras

    a, b, c = (RenderSession(_volume(), width=32, height=32) for _ in range(3))
    unlink = link_cameras(a, b)
    a.orbit(30, 0)
    assert b.camera.azimuth == a.camera.azimuth != c.camera.azimuth
    unlink()
    link_cameras([a, c])
    assert c.camera.azimuth == a.camera.azimuth
    with pytest.raises(InputError, match="links join RenderSessions, got str"):
        link_cameras(a, "b")
