"""Orbit camera <-> world-to-camera + pinhole K (OpenCV axes), and ray generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfmweb.camera import OrbitCamera, camera_rays
from rfmweb.errors import InputError


def project(cam: OrbitCamera, points: np.ndarray) -> np.ndarray:
    """World points [N, 3] -> pixel coordinates [N, 2] and camera depth [N]."""
    x = (cam.viewmat @ np.c_[points, np.ones(len(points))].T)[:3]
    uv = cam.K @ x
    return np.c_[uv[0] / uv[2], uv[1] / uv[2], x[2]]


def test_viewmat_is_rigid_and_looks_at_target():
    cam = OrbitCamera((10, -20, 30), azimuth=37, elevation=21, distance=400, fov=35, width=320, height=240)
    r = cam.viewmat[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    u, v, depth = project(cam, np.array([cam.target]))[0]
    assert (u, v) == pytest.approx((160, 120)) and depth == pytest.approx(400)
    assert np.linalg.norm(cam.position - np.array(cam.target)) == pytest.approx(400)


def test_anterior_view_shows_patient_right_on_screen_left_and_superior_up():
    cam = OrbitCamera((0, 0, 0), azimuth=0, elevation=0, distance=500, width=200, height=200)
    assert cam.position == pytest.approx([0, 500, 0])  # in front of the face (+y = anterior)
    right, superior = project(cam, np.array([[50.0, 0, 0], [0, 0, 50.0]]))
    assert right[0] < 100  # patient's right (+x) on the left of the screen
    assert superior[1] < 100  # superior up (v grows downwards)
    left_lateral = OrbitCamera((0, 0, 0), azimuth=90, distance=500)
    assert left_lateral.position == pytest.approx([-500, 0, 0], abs=1e-9)  # RAS: left is -x


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_through_viewmat(seed):
    rng = np.random.default_rng(seed)
    cam = OrbitCamera(tuple(rng.uniform(-100, 100, 3)), azimuth=rng.uniform(0, 360), elevation=rng.uniform(-80, 80),
                      distance=rng.uniform(50, 900), fov=rng.uniform(10, 90), width=int(rng.integers(16, 900)),
                      height=int(rng.integers(16, 900)))
    back = OrbitCamera.from_viewmat(cam.viewmat, cam.K, cam.width, cam.height, cam.distance)
    np.testing.assert_allclose(back.viewmat, cam.viewmat, atol=1e-9)
    np.testing.assert_allclose(back.K, cam.K, atol=1e-9)
    np.testing.assert_allclose(back.target, cam.target, atol=1e-9)
    assert back.azimuth == pytest.approx(cam.azimuth) and back.elevation == pytest.approx(cam.elevation)
    assert OrbitCamera.from_dict(cam.to_dict()) == cam


def test_rays_pass_through_pixel_centres():
    cam = OrbitCamera((5, 5, 5), azimuth=120, elevation=-30, distance=300, fov=50, width=7, height=5)
    origins, dirs = camera_rays(cam, dtype=torch.float64)
    assert origins.shape == (5, 7, 3) and dirs.shape == (5, 7, 3)
    np.testing.assert_allclose(dirs.norm(dim=-1).numpy(), 1.0)
    pts = (origins + 123.0 * dirs).reshape(-1, 3).numpy()
    uv = project(cam, pts)
    vv, uu = np.meshgrid(np.arange(5) + 0.5, np.arange(7) + 0.5, indexing="ij")
    np.testing.assert_allclose(uv[:, 0], uu.ravel(), atol=1e-9)
    np.testing.assert_allclose(uv[:, 1], vv.ravel(), atol=1e-9)
    np.testing.assert_allclose(origins[0, 0].numpy(), cam.position)


def test_framing_keeps_the_box_in_view():
    bounds = np.array([[-120.0, -90, -200], [120, 90, 200]])
    for az in (0, 45, 90, 200):
        cam = OrbitCamera.framing(bounds, azimuth=az, elevation=30, width=300, height=200)
        corners = np.array(np.meshgrid(*bounds.T, indexing="ij")).reshape(3, -1).T
        uvd = project(cam, corners)
        assert (uvd[:, 2] > 0).all()
        assert (uvd[:, 0] >= 0).all() and (uvd[:, 0] <= 300).all()
        assert (uvd[:, 1] >= 0).all() and (uvd[:, 1] <= 200).all()
        # and fills it: the box spans most of the image one way (160-182 of 200 px here), not a dot
        span = uvd[:, :2].max(0) - uvd[:, :2].min(0)
        assert span[0] > 0.7 * 300 or span[1] > 0.7 * 200, span


def test_a_viewport_turned_portrait_keeps_the_framed_box_in_view():
    """Framed in a landscape view, then the window is made narrow (a phone, a side panel): the box
    stays inside the image, as it was framed by its height; back to landscape restores the view."""
    bounds = np.array([[-120.0, -90, -200], [120, 90, 200]])
    corners = np.array(np.meshgrid(*bounds.T, indexing="ij")).reshape(3, -1).T
    cam = OrbitCamera.framing(bounds, azimuth=30, elevation=20, width=960, height=716)
    narrow = cam.in_viewport(280, 816)
    uvd = project(narrow, corners)
    assert (uvd[:, 0] >= 0).all() and (uvd[:, 0] <= 280).all() and (uvd[:, 1] >= 0).all()
    assert (project(cam.resized(280, 816), corners)[:, 0] < 0).any()           # the vertical fov alone cuts it
    assert narrow.in_viewport(1200, 700).distance == pytest.approx(cam.distance)
    assert cam.in_viewport(1920, 1080).distance == cam.distance                 # landscape to landscape


def test_interaction_semantics():
    cam = OrbitCamera((0, 0, 0), distance=400, width=200, height=200)
    assert cam.zoomed(0.5).distance == 200
    moved = cam.panned(10, 0)  # drag right: the scene follows the pointer
    u_before = project(cam, np.zeros((1, 3)))[0, 0]
    u_after = project(moved, np.zeros((1, 3)))[0, 0]
    assert u_after - u_before == pytest.approx(10, rel=1e-6)
    assert cam.orbited(0, 200).elevation == pytest.approx(89.9)  # clamped: "up" stays defined


def test_validation():
    with pytest.raises(InputError, match="distance"):
        OrbitCamera(distance=0)
    with pytest.raises(InputError, match="fov"):
        OrbitCamera(fov=180)
    with pytest.raises(InputError, match="image size"):
        OrbitCamera(width=0)
    with pytest.raises(InputError, match="unknown camera fields"):
        OrbitCamera.from_dict({"zoom": 2})
    for bad in ({"azimuth": float("nan")}, {"elevation": float("inf")}):
        with pytest.raises(InputError, match=f"camera {next(iter(bad))} must be a finite number"):
            OrbitCamera(**bad)   # once an all-black picture, written with exit status 0
