"""Classical volume rendering with VTK, offscreen (``vtk``): the interactive CPU path where numba is missing.

VTK renders through EGL (Mesa's llvmpipe on a machine with no GPU; no X server or extra system
package needed). Which mapper draws is chosen once per renderer from the OpenGL renderer
(:func:`~rfmweb.backend.vtk_volume_mapper`): ``vtkGPUVolumeRayCastMapper`` on a hardware OpenGL
(jittered rays; normals from central differences of the trilinear read at each sample: on the five
shaded CT presets its view at rest is within SSIM 0.967-0.977 of the ray-marchers', the fixed-point
mapper's quantised per-voxel normals 0.926-0.939), ``vtkFixedPointVolumeRayCastMapper`` on a software
one, where it is 9-18x faster than the GPU mapper's shader run by the CPU and can stop mid-frame for a
newer one. The rest of this docstring is about the fixed-point mapper, what a machine without a GPU
gets. Either is driven by the same
:class:`~rfmweb.transfer.TransferFunction`, :class:`~rfmweb.transfer.ClassTable` and
:class:`~rfmweb.camera.OrbitCamera` as the ray-marcher, with the same conventions: opacity per
unit distance (mm), a headlight with ambient light, voxel centres spanning the volume.

Plain show/hide of classes is applied by fading the hidden classes out of the scalar
(:func:`~rfmweb.render.fields.hide_voxels`, as the ray-marcher's grid does), which keeps VTK's
shading on the intensity gradient like the ray-marcher's. Class styles that VTK cannot express on a
scalar volume (class colours, partial class opacity, solid labels) are drawn by the ray-marcher
instead (the compiled one when numba is installed; logged once): VTK's only way to show
them, a pre-classified RGBA volume, interpolates colour and opacity between voxels of different
classes and shades with the gradient of that opacity, which broke thin bones (ribs, sternum,
clavicles) into floating pieces and grey blocks.

The fixed-point mapper samples on a fixed lattice without jitter and shades with raw central
differences: on steep presets (CT-Soft-Tissue, CT-Muscle, CT-Lung) a single frame shows wood-grain
rings that the ray-marchers (jittered, pre-integrated) do not. While the camera rests
(:meth:`VtkRenderer.accumulate`) the view converges as the ray-marchers' does: frames at
1 / :data:`REST_REFINE` of the step, each with the camera's window moved to another sub-pixel
position (the marchers' :func:`~rfmweb.render.scene.frame_offsets`) and its samples moved along the
rays by another fraction of the step (:func:`depth_phase`), averaged; the rings' phase changes from
frame to frame, so they fade (``benchmarks/bench_pictures.py`` measures both). The mapper's samples
lie at whole steps from the camera's near clipping plane, not from the volume's face, so moving that
plane by a fraction of the step moves every sample by it: without it, views along a voxel axis and
close-ups kept their rings at rest (head CT, CT-Soft-Tissue, 256^2, 0.5 degrees apart: lateral
0.936 -> 0.964, a 3x close-up of the forehead 0.891 -> 0.921).

VTK reads trilinearly, and the gradient of a trilinear read jumps at every cell face: under an
unshaded steep preset (CT-Soft-Tissue) the voxel lattice then draws contour rings on curved skin
that no jitter averages away (the ray-marchers read the CT through its cubic B-spline at rest).
At rest VTK therefore reads a second grid for unshaded presets: the volume's cubic B-spline sampled
at half the spacing (:func:`~rfmweb.render.sampling.bspline_upsample`, 8x the voxels, up to
:data:`REST_CUBIC_MAX_VOXELS`), kept in its own mapper so that the view going from moving to resting
and back re-uploads nothing. The head CT's face, CT-Soft-Tissue, converged at 960 x 716: SSIM to the
ray-marcher's cubic view 0.973 -> 0.989 (``benchmarks/bench_vtk_rest.py``). Shaded presets keep the
original grid: VTK shades with central differences of the grid it reads, which at half the spacing
are noisier (CT-Muscle 0.820 -> 0.789) and cost seconds to build for 8x the voxels. Larger volumes
stay trilinear too. Views with hidden classes read the spline of the faded scalar, which is smooth
where the classes were (:func:`~rfmweb.render.fields.hide_voxels`).

An OpenGL context belongs to one thread, so every VTK call runs on the renderer's own thread,
whichever thread asks for a frame. A long render polls ``abort`` through VTK's AbortCheckEvent.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..backend import load_triton_before_gl, vtk_volume_mapper
from ..camera import OrbitCamera
from ..extras import require
from ..transfer import ClassTable
from ..transfer.function import MAX_OPACITY
from .fields import HiddenFade, hide_key, scalar_np
from .sampling import bspline_upsample
from .scene import FULL, REST, Identity, Quality, RenderAborted, Scene, frame_offsets

log = logging.getLogger(__name__)

#: While the camera rests, VTK samples at this fraction of the frame's step (:meth:`VtkRenderer.accumulate`):
#: the fixed-point mapper's lattice rings shrink with the step, and a frame at 1/4 costs ~2x one at 1/1.
REST_REFINE = 4

#: The most voxels of the half-spacing cubic grid VTK reads at rest (module docstring): float32, 256 MiB,
#: plus VTK's 3 bytes per voxel of gradients (a 256 x 256 x 108 head CT needs 56 M).
REST_CUBIC_MAX_VOXELS = 64 * 2 ** 20


def depth_phase(frame: int) -> float:
    """How far along its rays frame ``frame`` at rest moves VTK's samples, in steps in ``[0, 1)``: 0 for
    frame 0, then the golden-ratio sequence, which covers the step evenly for any number of frames."""
    return float((frame * 0.6180339887498949) % 1.0)

# Go straight to EGL: the default factory first tries X and logs an error on headless machines.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _vtk():
    """Import the VTK modules we need (lazily: importing rfmweb must not require a GL stack).

    Raises:
        MissingDependency: VTK is not installed (says what to install).
    """
    require("vtk")
    load_triton_before_gl()
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factory overrides)
    import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401
    from vtkmodules import vtkCommonCore, vtkCommonDataModel, vtkRenderingCore, vtkRenderingVolume
    from vtkmodules.util import numpy_support
    return vtkCommonCore, vtkCommonDataModel, vtkRenderingCore, vtkRenderingVolume, numpy_support


class VtkRenderer:
    """The ``vtk`` renderer (offscreen; GPU ray casting on a hardware OpenGL, else CPU ray casting).

    Args:
        threads: the fixed-point mapper's ray-casting threads (default: VTK's choice).
    """

    name = "vtk"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self.mapper_kind: str | None = None   # "gpu" / "fixed-point" once the context exists (vtk_volume_mapper)
        self._window = None
        self._pipes: dict[bool, tuple] = {}           # cubic -> (mapper, volume actor)
        self._data_key: dict[bool, tuple] = {}
        self._images: dict[bool, object] = {}
        self._source: tuple = (None, None, None, None)  # (volume, mix, its scalar, its labels) as tensors
        self._fade = HiddenFade()                       # its blurs kept while the TF moves
        self._too_big_logged = False
        self._abort = None
        self._marcher = None      # draws the class styles VTK cannot (see render)
        self.note = ""            # one line about the last image: says when the ray-marcher drew it
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
        self._property = rendering.vtkVolumeProperty()
        self._window.Initialize()
        self.mapper_kind = vtk_volume_mapper(_gl_renderer(self._window))
        for cubic in (False, True):  # the volume as it is, and its cubic B-spline at half the spacing
            if self.mapper_kind == "gpu":
                mapper = volume_mod.vtkGPUVolumeRayCastMapper()
                mapper.UseJitteringOn()
            else:
                mapper = volume_mod.vtkFixedPointVolumeRayCastMapper()
                if self.threads:
                    mapper.SetNumberOfThreads(self.threads)
            mapper.AutoAdjustSampleDistancesOff()
            mapper.SetImageSampleDistance(1.0)
            actor = rendering.vtkVolume()
            actor.SetMapper(mapper)
            actor.SetProperty(self._property)
            actor.SetVisibility(0)
            self._renderer.AddVolume(actor)
            self._pipes[cubic] = (mapper, actor)
        self._window.AddObserver("AbortCheckEvent", self._check_abort)
        log.info("VTK renderer: %s, %s", self._window.GetClassName(), mapper.GetClassName())

    # -- data -------------------------------------------------------------------------------
    def _reads_cubic(self, scene: Scene, quality: Quality) -> bool:
        """Whether this frame reads the half-spacing cubic grid (module docstring)."""
        tf = scene.tf
        if not quality.cubic or tf.shading.enabled or tf.uses_gradient_opacity:
            return False
        if int(np.prod([2 * n - 1 for n in scene.volume.shape])) <= REST_CUBIC_MAX_VOXELS:
            return True
        if not self._too_big_logged:
            self._too_big_logged = True
            log.info("VTK reads this %s volume trilinearly at rest (its cubic grid would exceed %d voxels): "
                     "the ray-marcher draws it without contour rings", "x".join(map(str, scene.volume.shape)),
                     REST_CUBIC_MAX_VOXELS)
        return False

    def _set_data(self, scene: Scene, cubic: bool) -> None:
        """Upload the scalar volume (hidden classes made transparent), or with ``cubic`` its B-spline at
        half the spacing, to that grid's mapper when it changed."""
        vol = scene.volume
        mix = scene.effective_mix
        hidden = scene.classes.hidden if vol.labels is not None else ()
        key = (Identity(vol), mix, hide_key(hidden, scene.tf))
        if key == self._data_key.get(cubic):
            return
        _, data_model, _, _, numpy_support = _vtk()
        if self._source[0] is not vol or self._source[1] != mix:
            labels = None if vol.labels is None else torch.from_numpy(vol.labels.astype(np.int32))
            scalar = torch.from_numpy(np.ascontiguousarray(scalar_np(vol.data, mix), np.float32))
            self._source = (vol, mix, scalar, labels)
        arr = self._fade(self._source[2], self._source[3], hidden, scene.tf).numpy()
        spacing = np.asarray(vol.spacing)
        if cubic:
            arr = bspline_upsample(torch.from_numpy(np.asarray(arr, dtype=np.float32))).numpy()
            spacing = spacing / 2
        image = data_model.vtkImageData()
        image.SetDimensions(*arr.shape)
        image.SetSpacing(*spacing)
        # VTK images are x-fastest: Fortran order of our [X, Y, Z] arrays
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(arr.ravel(order="F")),
                                                                    deep=True))
        mapper, actor = self._pipes[cubic]
        mapper.SetInputData(image)
        self._images[cubic] = image
        # rotation + translation of the affine go to the actor (the image carries the spacing)
        m = np.eye(4)
        m[:3, :3] = vol.affine[:3, :3] / np.asarray(vol.spacing)
        m[:3, 3] = vol.affine[:3, 3]
        from vtkmodules.vtkCommonMath import vtkMatrix4x4
        mat = vtkMatrix4x4()
        for i in range(4):
            for j in range(4):
                mat.SetElement(i, j, m[i, j])
        actor.SetUserMatrix(mat)
        self._data_key[cubic] = key

    def _set_property(self, scene: Scene) -> None:
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
        prop.IndependentComponentsOn()
        ctf = rendering.vtkColorTransferFunction()
        for x, r, g, b in tf.color:
            ctf.AddRGBPoint(x, r, g, b)
        for x, a in tf.opacity:
            # the ray-marchers' cap (finite extinction): VTK would stop a ray at an opacity of 1 at once,
            # they let light in ~0.15 mm further, which on CT-Soft-Tissue's brightening ramp is a third
            # of the skin's brightness
            otf.AddPoint(x, min(a, MAX_OPACITY))
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

    def _set_camera(self, camera: OrbitCamera, offset: tuple[float, float] = (0.5, 0.5),
                    shift_mm: float = 0.0) -> None:
        """Point VTK's camera as ``camera``; ``offset``: where in its pixel each ray passes (pixels
        from the top-left corner, as :func:`~rfmweb.render.scene.frame_offsets`; the centre by default);
        ``shift_mm``: how far the near clipping plane, where the mapper's samples start, moves away from
        the camera (a fraction of a step, well inside the margin VTK leaves before the volume)."""
        cam = self._renderer.GetActiveCamera()
        cam.SetPosition(*camera.position)
        cam.SetFocalPoint(*camera.target)
        cam.SetViewUp(*(-camera.rotation[1]))
        cam.SetViewAngle(camera.fov)
        # the window centre is in [-1, 1] view coordinates (y up): a pixel is 2 / size of them
        cam.SetWindowCenter(-(offset[0] - 0.5) * 2.0 / camera.width, (offset[1] - 0.5) * 2.0 / camera.height)
        self._renderer.ResetCameraClippingRange()
        if shift_mm:
            near, far = cam.GetClippingRange()
            cam.SetClippingRange(near + shift_mm, far)

    # -- rendering ----------------------------------------------------------------------------
    def _check_abort(self, window, _event) -> None:
        if self._abort is not None and self._abort():
            window.SetAbortRender(1)

    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None) -> np.ndarray:
        """``[H', W', 3]`` uint8 sRGB image, ``H' = round(H * quality.scale)``; see :class:`Renderer`.

        Scenes with class styles VTK cannot draw go to the ray-marcher (module docstring), and
        :attr:`note` says so (a view titled VTK must not pass a ray-marched image off as VTK's)."""
        if self._routed(scene):
            return self._class_marcher().render(scene, camera, quality, abort=abort)
        if quality.frames <= 1:
            return self._gl_thread.submit(self._render, scene, camera, quality, abort).result()
        # ``quality.frames`` jittered frames averaged, as the ray-marchers do (it was ignored)
        total = self._sum_frames(scene, camera, quality, abort, range(quality.frames))
        return np.clip(np.rint(total / quality.frames), 0, 255).astype(np.uint8)

    def _sum_frames(self, scene: Scene, camera: OrbitCamera, quality: Quality, abort, frames: range) -> np.ndarray:
        """``[H, W, 3]`` float64 sum of the jittered frames ``frames`` (their :func:`frame_offsets` and
        :func:`depth_phase`), 0..255 each."""
        total = None
        for k in frames:
            img = self._gl_thread.submit(self._render, scene, camera, quality, abort, frame_offsets(k),
                                         depth_phase(k)).result()
            total = img.astype(np.float64) if total is None else total + img
        return total

    def _routed(self, scene: Scene) -> bool:
        """Whether the ray-marcher draws ``scene`` (VTK cannot draw its class styles); sets :attr:`note`."""
        from .registry import renderer_label

        routed = _needs_marcher(scene)
        self.note = f"drawn by {renderer_label(self._class_marcher().name)}: VTK cannot draw these class styles" \
            if routed else ""
        return routed

    def accumulate(self, scene: Scene, camera: OrbitCamera, frames_per_pass: int, passes: int, *,
                   abort=None, quality: Quality = REST):
        """Progressive convergence while the camera rests (module docstring): yields ``(image [H, W, 3]
        float32 in [0, 1], frames so far)`` after each pass of ``frames_per_pass`` frames at
        ``quality.step / REST_REFINE``, the running mean of all of them (with ``quality.cubic``, reading the
        half-spacing cubic grid where it fits). Class-styled scenes converge in the ray-marcher that draws them."""
        if self._routed(scene):
            yield from self._class_marcher().accumulate(scene, camera, frames_per_pass, passes, abort=abort,
                                                        quality=quality)
            return
        fine = Quality(1.0, quality.step / REST_REFINE, cubic=quality.cubic)
        total, done = 0.0, 0
        for _ in range(passes):
            total = total + self._sum_frames(scene, camera, fine, abort, range(done, done + frames_per_pass))
            done += frames_per_pass
            yield (total / (255.0 * done)).astype(np.float32), done

    def _class_marcher(self):
        if self._marcher is None:
            from ..backend import marcher_renderer
            from .registry import make_renderer

            name = marcher_renderer()
            log.warning("VTK cannot draw class colours, class opacity or solid labels exactly: the %s ray-marcher "
                        "draws those views", name)
            self._marcher = make_renderer(name)
        return self._marcher

    def _render(self, scene: Scene, camera: OrbitCamera, quality: Quality, abort,
                offset: tuple[float, float] = (0.5, 0.5), phase: float = 0.0) -> np.ndarray:
        if self._window is None:
            self._setup()
        numpy_support = _vtk()[4]
        w = max(1, round(camera.width * quality.scale))
        h = max(1, round(camera.height * quality.scale))
        cubic = self._reads_cubic(scene, quality)
        self._set_data(scene, cubic)
        self._set_property(scene)
        mapper, actor = self._pipes[cubic]
        step_mm = quality.step * min(scene.volume.spacing)
        mapper.SetSampleDistance(step_mm)
        actor.SetVisibility(1)
        self._pipes[not cubic][1].SetVisibility(0)
        self._renderer.SetBackground(*scene.background)
        self._window.SetSize(w, h)
        self._set_camera(camera.resized(w, h), offset, phase * step_mm)
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
        if self._marcher is not None and hasattr(self._marcher, "close"):
            self._marcher.close()


def _gl_renderer(window) -> str:
    """The ``GL_RENDERER`` string of ``window``'s (initialised) OpenGL context, e.g. ``llvmpipe (LLVM 15.0.6,
    256 bits)``; empty when VTK does not report it."""
    for line in window.ReportCapabilities().splitlines():
        if line.startswith("OpenGL renderer string:"):
            return line.split(":", 1)[1].strip()
    return ""


def _needs_marcher(scene: Scene) -> bool:
    """Whether ``scene`` has class styles VTK cannot draw (module docstring): the ray-marcher draws it."""
    return scene.volume.labels is not None and not _visibility_only(scene.classes)


def _visibility_only(classes: ClassTable) -> bool:
    """Whether the table only hides classes (what a scalar VTK volume can show exactly)."""
    return (classes.mode == "modulate" and not classes.use_class_colors
            and all(s.opacity == 1.0 or not s.visible for s in classes.styles))
