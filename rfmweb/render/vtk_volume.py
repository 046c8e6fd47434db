"""Classical volume rendering with VTK, offscreen (``vtk``): the fast interactive path on CPU.

``vtkFixedPointVolumeRayCastMapper`` renders through EGL (Mesa's llvmpipe on a machine with no
GPU; no X server or extra system package needed). It is driven by the same
:class:`~rfmweb.transfer.TransferFunction`, :class:`~rfmweb.transfer.ClassTable` and
:class:`~rfmweb.camera.OrbitCamera` as the ray-marcher, with the same conventions: opacity per
unit distance (mm), a headlight with ambient light, voxel centres spanning the volume.

Class styles that VTK cannot express on a scalar volume (class colours, partial class opacity,
solid labels) are pre-classified on the CPU into an RGBA volume (VTK's dependent-components mode);
plain show/hide of classes is applied by moving hidden voxels to a transparent intensity, which
keeps VTK's shading on the intensity gradient like the ray-marcher's.

An OpenGL context belongs to one thread, so every VTK call runs on the renderer's own thread,
whichever thread asks for a frame. A long render polls ``abort`` through VTK's AbortCheckEvent.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..camera import OrbitCamera
from ..transfer import ClassTable, TransferFunction
from .fields import hide_voxels, scalar_np
from .scene import FULL, Quality, RenderAborted, Scene

log = logging.getLogger(__name__)

# Go straight to EGL: the default factory first tries X and logs an error on headless machines.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _vtk():
    """Import the VTK modules we need (lazily: importing rfmweb must not require a GL stack)."""
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factory overrides)
    import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401
    from vtkmodules import vtkCommonCore, vtkCommonDataModel, vtkRenderingCore, vtkRenderingVolume
    from vtkmodules.util import numpy_support
    return vtkCommonCore, vtkCommonDataModel, vtkRenderingCore, vtkRenderingVolume, numpy_support


class VtkRenderer:
    """The ``vtk`` renderer (offscreen, CPU ray casting).

    Args:
        threads: ray-casting threads (default: VTK's choice).
    """

    name = "vtk"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._window = None
        self._data_key: tuple | None = None
        self._image = None
        self._abort = None
        self._gl_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rfmweb-vtk")

    def _setup(self) -> None:
        core, _, rendering, volume_mod, _ = _vtk()
        self._window = rendering.vtkRenderWindow()
        self._window.SetOffScreenRendering(1)
        self._renderer = rendering.vtkRenderer()
        self._window.AddRenderer(self._renderer)
        light = rendering.vtkLight()
        light.SetLightTypeToHeadlight()
        light.SetAmbientColor(1.0, 1.0, 1.0)  # VTK's default light has none: match the ray-marcher
        self._renderer.AutomaticLightCreationOff()
        self._renderer.AddLight(light)
        self._mapper = volume_mod.vtkFixedPointVolumeRayCastMapper()
        self._mapper.AutoAdjustSampleDistancesOff()
        self._mapper.SetImageSampleDistance(1.0)
        if self.threads:
            self._mapper.SetNumberOfThreads(self.threads)
        self._property = rendering.vtkVolumeProperty()
        self._actor = rendering.vtkVolume()
        self._actor.SetMapper(self._mapper)
        self._actor.SetProperty(self._property)
        self._renderer.AddVolume(self._actor)
        self._window.AddObserver("AbortCheckEvent", self._check_abort)
        log.info("VTK renderer: %s, %s", self._window.GetClassName(), self._mapper.GetClassName())

    # -- data -------------------------------------------------------------------------------
    def _set_data(self, scene: Scene) -> str:
        """Upload the scalar (or pre-classified RGBA) volume when it changed. Returns the mode."""
        vol = scene.volume
        mix = scene.effective_mix
        classes = scene.classes if vol.labels is not None else ClassTable()
        rgba_mode = not classes.is_trivial and not _visibility_only(classes)
        hidden = classes.hidden
        key = (id(vol), mix, rgba_mode, hidden, (scene.tf, classes) if rgba_mode else None)
        if key == self._data_key:
            return "rgba" if rgba_mode else "scalar"
        _, data_model, _, _, numpy_support = _vtk()
        scalar = scalar_np(vol.data, mix)
        if rgba_mode:
            arr = _preclassify(scalar, vol.labels, scene.tf, classes)        # [X, Y, Z, 4] uint8
        else:
            arr = hide_voxels(scalar, vol.labels, hidden, scene.tf)
        image = data_model.vtkImageData()
        image.SetDimensions(*vol.shape)
        spacing = np.asarray(vol.spacing)
        image.SetSpacing(*spacing)
        # VTK images are x-fastest: Fortran order of our [X, Y, Z] arrays
        ncomp = arr.shape[-1] if rgba_mode else 1
        flat = arr.reshape(-1, ncomp, order="F") if rgba_mode else arr.ravel(order="F")
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(flat), deep=True))
        self._mapper.SetInputData(image)
        self._image = image
        # rotation + translation of the affine go to the actor (the image carries the spacing)
        m = np.eye(4)
        m[:3, :3] = vol.affine[:3, :3] / spacing
        m[:3, 3] = vol.affine[:3, 3]
        from vtkmodules.vtkCommonMath import vtkMatrix4x4
        mat = vtkMatrix4x4()
        for i in range(4):
            for j in range(4):
                mat.SetElement(i, j, m[i, j])
        self._actor.SetUserMatrix(mat)
        self._data_key = key
        return "rgba" if rgba_mode else "scalar"

    def _set_property(self, scene: Scene, mode: str) -> None:
        _, _, rendering, _, _ = _vtk()
        from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
        prop, tf = self._property, scene.tf
        prop.SetInterpolationTypeToLinear()
        prop.SetScalarOpacityUnitDistance(tf.unit_distance)
        sh = tf.shading
        prop.SetShade(int(sh.enabled))
        prop.SetAmbient(sh.ambient)
        prop.SetDiffuse(sh.diffuse)
        prop.SetSpecular(sh.specular)
        prop.SetSpecularPower(sh.power)
        otf = vtkPiecewiseFunction()
        if mode == "rgba":
            prop.IndependentComponentsOff()
            for i in range(0, 256, 8):  # alpha is stored square-root encoded (see _preclassify)
                otf.AddPoint(i, (i / 255.0) ** 2)
            otf.AddPoint(255, 1.0)
            prop.SetScalarOpacity(otf)
            prop.DisableGradientOpacityOn()
            return
        prop.IndependentComponentsOn()
        ctf = rendering.vtkColorTransferFunction()
        for x, r, g, b in tf.color:
            ctf.AddRGBPoint(x, r, g, b)
        for x, a in tf.opacity:
            otf.AddPoint(x, a)
        prop.SetColor(ctf)
        prop.SetScalarOpacity(otf)
        if tf.uses_gradient_opacity:
            gtf = vtkPiecewiseFunction()
            for x, a in tf.gradient_opacity:
                gtf.AddPoint(x, a)
            prop.SetGradientOpacity(gtf)
            prop.DisableGradientOpacityOff()
        else:
            prop.DisableGradientOpacityOn()

    def _set_camera(self, camera: OrbitCamera) -> None:
        cam = self._renderer.GetActiveCamera()
        cam.SetPosition(*camera.position)
        cam.SetFocalPoint(*camera.target)
        cam.SetViewUp(*(-camera.rotation[1]))
        cam.SetViewAngle(camera.fov)
        self._renderer.ResetCameraClippingRange()

    # -- rendering ----------------------------------------------------------------------------
    def _check_abort(self, window, _event) -> None:
        if self._abort is not None and self._abort():
            window.SetAbortRender(1)

    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None) -> np.ndarray:
        """``[H', W', 3]`` uint8 sRGB image, ``H' = round(H * quality.scale)``; see :class:`Renderer`."""
        return self._gl_thread.submit(self._render, scene, camera, quality, abort).result()

    def _render(self, scene: Scene, camera: OrbitCamera, quality: Quality, abort) -> np.ndarray:
        if self._window is None:
            self._setup()
        numpy_support = _vtk()[4]
        w = max(1, round(camera.width * quality.scale))
        h = max(1, round(camera.height * quality.scale))
        mode = self._set_data(scene)
        self._set_property(scene, mode)
        self._mapper.SetSampleDistance(quality.step * min(scene.volume.spacing))
        self._renderer.SetBackground(*scene.background)
        self._window.SetSize(w, h)
        self._set_camera(camera.resized(w, h))
        self._abort = abort
        try:
            self._window.Render()
        finally:
            self._abort = None
        if self._window.GetAbortRender() or (abort is not None and abort()):
            self._window.SetAbortRender(0)
            raise RenderAborted("VTK render stopped: a newer frame is wanted")
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter
        grab = vtkWindowToImageFilter()
        grab.SetInput(self._window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        out = grab.GetOutput()
        pixels = numpy_support.vtk_to_numpy(out.GetPointData().GetScalars())
        width, height, _ = out.GetDimensions()
        return np.ascontiguousarray(pixels.reshape(height, width, -1)[::-1, :, :3])

    def close(self) -> None:
        def finalize():
            if self._window is not None:
                self._window.Finalize()
                self._window = None
        self._gl_thread.submit(finalize).result()
        self._gl_thread.shutdown()


def _visibility_only(classes: ClassTable) -> bool:
    """Whether the table only hides classes (what a scalar VTK volume can show exactly)."""
    return (classes.mode == "modulate" and not classes.use_class_colors
            and all(s.opacity == 1.0 or not s.visible for s in classes.styles))


def _preclassify(scalar: np.ndarray, labels: np.ndarray, tf: TransferFunction, classes: ClassTable) -> np.ndarray:
    """Per-voxel RGBA (uint8) = TF applied to the scalar, styled by the labels' classes.

    VTK interpolates these values, so two precautions keep it close to the ray-marcher, which
    interpolates intensities: transparent voxels take the colour of the nearest visible voxel (no
    dark fringes from blending with black), and alpha is stored as ``sqrt(alpha)`` (more levels
    for the low opacities of MR presets; VTK also shades with the gradient of this channel).
    """
    from scipy import ndimage

    rgba = tf.rgba_np(scalar)                                                 # [X, Y, Z, 4]
    crgba, use = classes.lookup(int(labels.max()))
    crgba, use = crgba.numpy()[labels], use.numpy()[labels]
    if classes.mode == "solid":
        rgba[..., 3] = np.where(use > 0, crgba[..., 3], rgba[..., 3] * crgba[..., 3])
    else:
        rgba[..., 3] *= crgba[..., 3]
    rgba[..., :3] += (crgba[..., :3] - rgba[..., :3]) * use[..., None]
    clear = rgba[..., 3] <= 1e-3
    if clear.any() and not clear.all():
        nearest = ndimage.distance_transform_edt(clear, return_distances=False, return_indices=True)
        rgba[..., :3] = rgba[tuple(nearest)][..., :3]
    rgba[..., 3] = np.sqrt(np.clip(rgba[..., 3], 0, 1))
    return (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8)
