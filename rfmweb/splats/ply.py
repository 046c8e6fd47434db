"""Standard 3DGS ``.ply`` files (the INRIA layout read by common splat viewers).

One ``vertex`` element, binary little-endian float32 properties, in this order::

    x y z nx ny nz f_dc_0..2 f_rest_0..(3 (deg+1)^2 - 4) opacity scale_0..2 rot_0..3

``f_dc`` and ``f_rest`` are SH coefficients (colour = 0.28209 f_dc + ... + 0.5); ``f_rest`` is
stored channel-major (all R coefficients, then G, then B), ``opacity`` is a logit, ``scale`` is the
log of the standard deviations along the principal axes and ``rot`` the unit quaternion
``(w, x, y, z)`` of the rotation whose columns are those axes: ``Sigma = R diag(e^{2 scale}) R^T``.
Normals are written as 0.

Export (:func:`export_ply`) slices 6D splats for one camera and writes the 3D Gaussians seen from
there, with the degree-1 SH (viewers evaluate it per view) or, with ``sh_degree=0``, the colour
of that view baked into ``f_dc``.

Import (:func:`import_ply`) builds :class:`Splats6D` whose slice returns the file's Gaussians
for *any* view direction: position block ``S_p`` = the file's covariance, no position-direction
coupling (``S_pd = 0``, so ``mu_cond = mu_p`` and ``Sigma_cond = S_p`` exactly) and an isotropic
direction block ``S_d = (1e3)^2 I`` (direction means 0), so the sliced opacity is
``sigmoid(a) exp(-0.35 |d|^2 / 1e6) = sigmoid(a) (1 - 3.5e-7)``. Caveat: the 6DGS factor
(``|l| < 1``, :mod:`.model`) cannot represent strongly correlated covariances (e.g.
``|corr(x, y)| >= 1/sqrt(2)``); those splats are clamped to the nearest representable factor and
reported in the log (``import_ply(..., return_exact=True)`` returns the mask).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..errors import InputError
from ..io.atomic import atomic_write
from .model import Splats6D
from .slicing import LAMBDA_OPA, SH_C0, slice_6d

log = logging.getLogger(__name__)
DIR_STD = 1e3  # direction-block standard deviation of imported splats (unit-vector space)
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_PLY_NAMES = ("char", "uchar", "short", "ushort", "int", "uint", "float", "double")  # what we write


# -- covariance <-> scale + rotation ----------------------------------------------------------------
def covariance_to_scale_rotation(covars: np.ndarray,  # [N, 3, 3]
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """``covars [N, 3, 3]`` -> ``(log_scales [N, 3], quats_wxyz [N, 4])`` with a proper rotation."""
    covars = np.asarray(covars, dtype=np.float64)
    evals, evecs = np.linalg.eigh(0.5 * (covars + np.swapaxes(covars, -1, -2)))  # columns = axes
    flip = np.linalg.det(evecs) < 0
    evecs[flip, :, 0] *= -1  # a reflection -> a rotation: flip one axis (Sigma is unchanged)
    log_scales = 0.5 * np.log(np.clip(evals, 1e-30, None))
    return log_scales, rotation_to_quaternion(evecs)


def rotation_to_quaternion(rot: np.ndarray,  # [N, 3, 3]
                           ) -> np.ndarray:
    """``[N, 3, 3]`` rotations -> ``[N, 4]`` unit quaternions ``(w, x, y, z)``, ``w >= 0``."""
    r = rot
    # Shepperd's method: pick the largest of 4 candidates for numerical stability.
    tr = r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2]
    cand = np.stack([1 + tr, 1 + r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2], 1 - r[:, 0, 0] + r[:, 1, 1] - r[:, 2, 2],
                     1 - r[:, 0, 0] - r[:, 1, 1] + r[:, 2, 2]], -1)
    k = np.argmax(cand, -1)
    q = np.empty((len(r), 4))
    s = np.sqrt(np.clip(cand[np.arange(len(r)), k], 1e-30, None)) * 2  # 4 |q_k|
    m = k == 0
    q[m] = np.stack([s[m] / 4, (r[m, 2, 1] - r[m, 1, 2]) / s[m], (r[m, 0, 2] - r[m, 2, 0]) / s[m],
                     (r[m, 1, 0] - r[m, 0, 1]) / s[m]], -1)
    m = k == 1
    q[m] = np.stack([(r[m, 2, 1] - r[m, 1, 2]) / s[m], s[m] / 4, (r[m, 0, 1] + r[m, 1, 0]) / s[m],
                     (r[m, 0, 2] + r[m, 2, 0]) / s[m]], -1)
    m = k == 2
    q[m] = np.stack([(r[m, 0, 2] - r[m, 2, 0]) / s[m], (r[m, 0, 1] + r[m, 1, 0]) / s[m], s[m] / 4,
                     (r[m, 1, 2] + r[m, 2, 1]) / s[m]], -1)
    m = k == 3
    q[m] = np.stack([(r[m, 1, 0] - r[m, 0, 1]) / s[m], (r[m, 0, 2] + r[m, 2, 0]) / s[m],
                     (r[m, 1, 2] + r[m, 2, 1]) / s[m], s[m] / 4], -1)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


def quaternion_to_rotation(q: np.ndarray,  # [N, 4]
                           ) -> np.ndarray:
    """``[N, 4]`` quaternions ``(w, x, y, z)`` (any norm > 0) -> ``[N, 3, 3]`` rotations."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = (q / np.linalg.norm(q, axis=-1, keepdims=True)).T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)


# -- 3D Gaussians <-> file --------------------------------------------------------------------------
def write_ply(path: str | os.PathLike,
              means: np.ndarray,  # [N, 3]
              covars: np.ndarray,  # [N, 3, 3]
              opacities: np.ndarray,  # [N]
              sh: np.ndarray,  # [N, K, 3]
              ) -> None:
    """Write 3D Gaussians atomically.

    Args:
        means: ``[N, 3]`` mm. covars: ``[N, 3, 3]``. opacities: ``[N]`` in (0, 1).
        sh: ``[N, K, 3]`` SH coefficients, ``K = (deg + 1)^2`` (K = 1: colour only).
    """
    means, covars = np.asarray(means, np.float64), np.asarray(covars, np.float64)
    opacities, sh = np.asarray(opacities, np.float64), np.asarray(sh, np.float64)
    n, k = len(means), sh.shape[1]
    if sh.shape != (n, k, 3) or int(round(k ** 0.5)) ** 2 != k or covars.shape != (n, 3, 3) \
            or means.shape != (n, 3) or opacities.shape != (n,):
        raise InputError(f"write_ply: shapes must be means [N, 3], covars [N, 3, 3], opacities [N], sh [N, K, 3] "
                         f"with K a square; got {means.shape}, {covars.shape}, {opacities.shape}, {sh.shape}")
    log_scales, quats = covariance_to_scale_rotation(covars)
    p = np.clip(opacities, 1e-7, 1 - 1e-7)
    rest = np.swapaxes(sh[:, 1:, :], 1, 2).reshape(n, -1)  # channel-major, as INRIA writes it
    columns = [means, np.zeros((n, 3)), sh[:, 0, :], rest, np.log(p / (1 - p))[:, None], log_scales, quats]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
             *(f"f_rest_{i}" for i in range(rest.shape[1])), "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.concatenate(columns, axis=1).astype("<f4")
    write_vertex_ply(path, np.rec.fromarrays(data.T, dtype=[(name, "<f4") for name in names]))


def write_vertex_ply(path: str | os.PathLike,
                     vertex: np.ndarray,  # [N] structured: one field per property
                     comment: str | tuple[str, ...] = "written by rfmweb") -> None:
    """Write one binary little-endian ``vertex`` element atomically: a property per field of ``vertex``
    (``comment``: one header comment line, or several).

    Fields must be numeric scalars (float32 -> ``float``, int32 -> ``int``, ...; see ``_PLY_TYPES``).
    """
    names = {np.dtype(t).str[1:]: name for name, t in _PLY_TYPES.items() if name in _PLY_NAMES}
    props = []
    for field in vertex.dtype.names:
        key = vertex.dtype[field].str[1:]
        if key not in names or vertex.dtype[field].shape:
            raise InputError(f"write_vertex_ply: field {field!r} has unsupported dtype {vertex.dtype[field]}")
        props.append(f"property {names[key]} {field}")
    little = np.dtype([(f, vertex.dtype[f].newbyteorder("<")) for f in vertex.dtype.names])
    body = np.ascontiguousarray(vertex.astype(little)).tobytes()
    comments = [f"comment {c}" for c in ((comment,) if isinstance(comment, str) else comment)]
    header = "\n".join(["ply", "format binary_little_endian 1.0", *comments,
                        f"element vertex {len(vertex)}", *props, "end_header"]) + "\n"

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(body)

    atomic_write(path, write)


def _parse_header(path, raw: bytes):
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise InputError("not a PLY file (no 'ply' magic or no 'end_header')", path)
    body = raw.index(b"\n", end) + 1
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements, comments = None, [], []  # elements: [(name, count, [(prop, dtype)])]
    for line in lines[1:]:
        words = line.split()
        if words and words[0] == "comment":
            comments.append(line[len("comment "):])
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1] if len(words) > 1 else None
        elif words[0] == "element" and len(words) == 3:
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list":
                raise InputError(f"list property {words[-1]!r} is not supported in a 3DGS file", path)
            if words[1] not in _PLY_TYPES or len(words) != 3:
                raise InputError(f"bad property line {line!r}", path)
            elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
        else:
            raise InputError(f"bad header line {line!r}", path)
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise InputError(f"PLY format {fmt!r} not supported (binary_little_endian or binary_big_endian)", path)
    return ("<" if fmt == "binary_little_endian" else ">"), elements, body, comments


def read_vertex_ply(path: str | os.PathLike) -> np.ndarray:
    """The ``vertex`` element of a binary PLY file as a structured array ``[N]`` (one field per property)."""
    return read_vertex_ply_and_comments(path)[0]


def read_vertex_ply_and_comments(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """The ``vertex`` element of a binary PLY file as a structured array ``[N]`` (one field per property),
    and the header's comment lines (without ``comment ``).

    Raises:
        InputError: naming ``path``: missing or unreadable file, not a binary PLY, no ``vertex``
            element, or fewer bytes than the header announces.
    """
    try:
        raw = open(path, "rb").read()
    except FileNotFoundError:
        raise InputError("no such PLY file", path) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None
    endian, elements, pos, comments = _parse_header(path, raw)
    for name, count, props in elements:
        dtype = np.dtype([(p, endian + t) for p, t in props])
        if name == "vertex":
            if pos + count * dtype.itemsize > len(raw):
                raise InputError(f"file truncated: {count} vertices need {count * dtype.itemsize} bytes", path)
            return np.frombuffer(raw, dtype=dtype, count=count, offset=pos), comments
        pos += count * dtype.itemsize
    raise InputError("no 'vertex' element", path)


def read_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a 3DGS ``.ply``: ``{"means" [N, 3], "covars" [N, 3, 3], "opacities" [N], "sh" [N, K, 3]}``."""
    vertex = read_vertex_ply(path)
    names = vertex.dtype.names
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [p for p in need if p not in names]
    if missing:
        raise InputError(f"not a 3DGS file: vertex lacks properties {missing}", path)
    n_rest = sum(1 for p in names if p.startswith("f_rest_"))
    k = 1 + n_rest // 3
    if n_rest % 3 or int(round(k ** 0.5)) ** 2 != k or any(f"f_rest_{i}" not in names for i in range(n_rest)):
        raise InputError(f"f_rest_* count {n_rest} is not 3 ((deg + 1)^2 - 1)", path)
    col = lambda *ps: np.stack([vertex[p].astype(np.float64) for p in ps], -1)  # noqa: E731
    means, quats = col("x", "y", "z"), col("rot_0", "rot_1", "rot_2", "rot_3")
    log_scales, logit = col("scale_0", "scale_1", "scale_2"), vertex["opacity"].astype(np.float64)
    sh = col("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :]
    if n_rest:
        rest = col(*(f"f_rest_{i}" for i in range(n_rest))).reshape(-1, 3, k - 1)  # channel-major
        sh = np.concatenate([sh, np.swapaxes(rest, 1, 2)], 1)
    for name, a in (("positions", means), ("rotations", quats), ("scales", log_scales), ("opacities", logit),
                    ("SH coefficients", sh)):
        if not np.isfinite(a).all():
            raise InputError(f"{name} hold NaN or infinite values", path)
    if (np.linalg.norm(quats, axis=-1) == 0).any():
        raise InputError("a rotation quaternion is zero", path)
    if (np.abs(log_scales) > 80).any():
        raise InputError("a log-scale is beyond +-80 (not a log standard deviation?)", path)
    rot = quaternion_to_rotation(quats)
    covars = rot @ (np.exp(2 * log_scales)[:, :, None] * np.swapaxes(rot, 1, 2))
    return {"means": means, "covars": covars, "opacities": 1 / (1 + np.exp(-logit)), "sh": sh}


# -- 6D splats <-> file -----------------------------------------------------------------------------
def export_ply(path: str | os.PathLike, splats: Splats6D, camera_centre, *, sh_degree: int = 1,
               lambda_opa: float = LAMBDA_OPA) -> None:
    """Slice ``splats`` for one camera centre ``[3]`` (mm, or an OrbitCamera) and write a 3DGS ``.ply``.

    ``sh_degree=1`` writes the splats' SH coefficients (viewers evaluate them per view);
    ``sh_degree=0`` bakes the colour seen from ``camera_centre`` into ``f_dc``.
    """
    if sh_degree not in (0, 1):
        raise InputError(f"sh_degree must be 0 or 1, got {sh_degree}")
    with torch.no_grad():
        g = slice_6d(splats, camera_centre, lambda_opa)
        if g.n_views != 1:
            raise InputError(f"export_ply slices for one camera; got {g.n_views}")
        sh = splats.sh if sh_degree == 1 else ((g.colors[0] - 0.5) / SH_C0)[:, None, :]
        write_ply(path, g.means[0].cpu().numpy(), g.covars.cpu().numpy(), g.opacities[0].cpu().numpy(),
                  sh.cpu().numpy())


def import_ply(path: str | os.PathLike, *, device=None, dtype: torch.dtype = torch.float32,
               return_exact: bool = False):
    """Read a 3DGS ``.ply`` as :class:`Splats6D` that slice back to its Gaussians (module docstring).

    SH beyond degree 1 is dropped (logged). Returns the splats, or ``(splats, exact [N] bool)``.
    """
    g = read_ply(path)
    n, k = g["sh"].shape[:2]
    sh = np.zeros((n, 4, 3))
    sh[:, :min(k, 4)] = g["sh"][:, :4]
    if k > 4:
        log.info("%s: SH degree %d truncated to 1", path, int(round(k ** 0.5)) - 1)
    cov = np.zeros((n, 6, 6))
    cov[:, :3, :3] = g["covars"]
    cov[:, 3:, 3:] = DIR_STD ** 2 * np.eye(3)
    splats, exact = Splats6D.from_covariance(torch.as_tensor(g["means"], dtype=dtype, device=device),
                                             torch.as_tensor(cov, device=device),
                                             torch.as_tensor(g["opacities"], device=device),
                                             torch.as_tensor(sh, dtype=dtype, device=device))
    if not bool(exact.all()):
        log.warning("%s: %d of %d Gaussians are too strongly correlated for the 6DGS factor and were "
                    "approximated", path, int((~exact).sum()), n)
    return (splats, exact) if return_exact else splats
