r"""A changing set of trainable 6D splats: parameters, their Adam state, densify / prune (3DGS-style).

:class:`SplatParams` holds the raw parameters of :class:`~rfmweb.splats.model.Splats6D` as leaf
tensors, one Adam parameter group each (so each has its own learning rate), and edits the set the
way 3DGS does (Kerbl et al. 2023, ``GaussianModel.densify_and_prune``): rows are dropped or
appended on the parameters *and* on Adam's ``exp_avg`` / ``exp_avg_sq`` (appended rows start at
zero moments; the step count is kept), so the optimiser never sees a stale or mis-sized state.

Densification statistics (:class:`GradStats`): after each backward pass, the gradient of the loss
with respect to each splat's *sliced* 3D mean (world mm, per view) is turned into a screen-space
gradient without touching the rasteriser: with ``t = R mu + t_view`` the camera-space mean,
``u = f_x t_x / t_z + c_x`` gives ``dL/du ~= (dL/dt_x) t_z / f_x`` (and likewise for ``v``), exact up
to the mean's small effect on the projected covariance. It is scaled to NDC units as gsplat's
default strategy does (``x W / 2``, ``y H / 2``), so 3DGS's threshold (2e-4) keeps its meaning
at any resolution, and works unchanged on gsplat and on the torch twin.

:func:`densify_and_prune` then, for splats whose mean NDC gradient over the views that saw them
is at least ``grad_threshold``:

- **clones** the small ones (largest positional standard deviation <= ``dense_frac * extent``):
  an exact copy, which the next gradient steps pull apart;
- **splits** the large ones into two children placed at samples of the splat's positional marginal
  ``N(mu_p, S_p)`` (``mu_p + L_pp z``: the position block of the lower-triangular factor), with the
  positional log-scales reduced by ``log(1.6)`` (3DGS's ``0.8 * 2``). Shrinking ``s_p`` alone scales
  ``S_p`` by 1/1.6^2 and ``S_pd`` by 1/1.6 and leaves ``S_d``, so the conditional mean shift and
  the conditional covariance shrink consistently and the view-dependent opacity is unchanged;
- **prunes** splats with ``sigmoid(a) < min_opacity`` (DESIGN.md: 0.01; the sliced opacity is at
  most that) and huge ones (positional std > ``prune_scale * extent``).

Clones and splits are taken in order of decreasing gradient, at most ``max_grow * N`` per step
and, with ``max_splats`` set, until that budget is used (pruned splats free budget first).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from ..errors import InputError
from .model import Splats6D

log = logging.getLogger(__name__)

#: Parameter groups, in the order Adam holds them.
GROUPS = ("means", "dir_means", "chol_log_diag", "chol_lower", "opacity_logits", "sh_dc", "sh_rest")
SPLIT_SHRINK = 1.6


class SplatParams:
    """Leaf tensors of N splats and one Adam optimiser over them (one group per parameter).

    Args:
        splats: the starting splats (copied; moved to ``device`` as float32).
        lrs: learning rate per name in :data:`GROUPS`.
        device: where to optimise.

    ``sh`` is held as ``sh_dc [N, 1, 3]`` and ``sh_rest [N, 3, 3]`` so that the view-independent
    colour and the degree-1 terms get different learning rates (3DGS: rest = DC / 20).
    """

    def __init__(self, splats: Splats6D, lrs: dict[str, float], device=None) -> None:
        missing = set(GROUPS) - set(lrs)
        if missing:
            raise InputError(f"learning rates missing for {sorted(missing)}")
        s = splats.detach().to(device, torch.float32)
        raw = {"means": s.means, "dir_means": s.dir_means, "chol_log_diag": s.chol_log_diag,
               "chol_lower": s.chol_lower, "opacity_logits": s.opacity_logits,
               "sh_dc": s.sh[:, :1], "sh_rest": s.sh[:, 1:]}
        self.params = {k: v.clone().contiguous().requires_grad_(True) for k, v in raw.items()}
        self.labels = s.labels
        # eps = 1e-15 as in 3DGS: Adam's default 1e-8 stalls the tiny gradients of far-off splats
        self.optimizer = torch.optim.Adam([{"params": [self.params[k]], "lr": float(lrs[k]), "name": k}
                                           for k in GROUPS], eps=1e-15)

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def splats(self) -> Splats6D:
        """The current splats, differentiable with respect to the leaf parameters."""
        p = self.params
        return Splats6D(p["means"], p["dir_means"], p["chol_log_diag"], p["chol_lower"], p["opacity_logits"],
                        torch.cat([p["sh_dc"], p["sh_rest"]], 1), self.labels)

    def detached(self) -> Splats6D:
        return self.splats().detach()

    def set_lr(self, name: str, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if group["name"] == name:
                group["lr"] = float(lr)

    def lr(self, name: str) -> float:
        return next(g["lr"] for g in self.optimizer.param_groups if g["name"] == name)

    # -- editing the set ------------------------------------------------------------------------
    @torch.no_grad()
    def edit(self, keep: torch.Tensor,  # [N] bool
             new: dict[str, torch.Tensor] | None = None,  # name -> [M, ...]
             new_labels: torch.Tensor | None = None,  # [M]
             ) -> None:
        """Keep the rows ``keep`` and append ``new`` rows, on the parameters and on Adam's state.

        Kept rows keep their Adam moments; appended rows start with zero moments (3DGS's
        ``cat_tensors_to_optimizer``); the step count of each group is unchanged.
        """
        n = len(self)
        if keep.dtype != torch.bool or keep.shape != (n,):
            raise InputError(f"keep must be a bool mask [{n}], got {keep.dtype} {tuple(keep.shape)}")
        new = new or {}
        m = 0
        if new:
            if set(new) != set(GROUPS):
                raise InputError(f"new rows must give every parameter {GROUPS}, got {sorted(new)}")
            m = new["means"].shape[0]
        keep = keep.to(self.device)
        for group in self.optimizer.param_groups:
            name = group["name"]
            old = group["params"][0]
            rows = [old.detach()[keep]]
            if m:
                rows.append(new[name].to(old.device, old.dtype).reshape(m, *old.shape[1:]))
            param = torch.cat(rows).contiguous().requires_grad_(True)
            state = self.optimizer.state.pop(old, None)
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    moment = state[key][keep]
                    if m:
                        moment = torch.cat([moment, moment.new_zeros(m, *moment.shape[1:])])
                    state[key] = moment.contiguous()
                self.optimizer.state[param] = state
            group["params"][0] = param
            self.params[name] = param
        if self.labels is not None:
            labels = [self.labels[keep]]
            if m:
                fill = new_labels if new_labels is not None else torch.zeros(m, dtype=torch.long)
                labels.append(fill.to(self.labels.device, self.labels.dtype))
            self.labels = torch.cat(labels)

    @torch.no_grad()
    def reset_opacity(self, max_opacity: float) -> None:
        """Clamp every opacity to at most ``max_opacity`` and zero its Adam moments (3DGS)."""
        p = self.params["opacity_logits"]
        p.copy_(torch.minimum(p, torch.full_like(p, math.log(max_opacity / (1 - max_opacity)))))
        state = self.optimizer.state.get(p)
        if state:
            state["exp_avg"].zero_()
            state["exp_avg_sq"].zero_()


class GradStats:
    """Accumulated screen-space (NDC) gradient norm of each splat's mean, and how often it was seen."""

    def __init__(self, n: int, device=None) -> None:
        self.grad_sum = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device)

    @torch.no_grad()
    def add(self, grad_means: torch.Tensor,  # [V, N, 3] dL/d(sliced means), world mm
            means: torch.Tensor,  # [V, N, 3] sliced means, world mm
            viewmats: torch.Tensor,  # [V, 4, 4]
            Ks: torch.Tensor,  # [V, 3, 3]  # noqa: N803
            width: int, height: int) -> None:
        """Add one backward pass's gradients (see the module docstring for the screen-space maths)."""
        r = viewmats[:, None, :3, :3]  # [V, 1, 3, 3]
        g_cam = (r @ grad_means[..., None])[..., 0]  # [V, N, 3]
        depth = (r @ means[..., None])[..., 2, 0] + viewmats[:, None, 2, 3]  # [V, N]
        gu = g_cam[..., 0] * depth / Ks[:, None, 0, 0] * (0.5 * width)  # [V, N] NDC units
        gv = g_cam[..., 1] * depth / Ks[:, None, 1, 1] * (0.5 * height)
        seen = (grad_means != 0).any(-1) & (depth > 0)  # [V, N]
        norm = torch.sqrt(gu * gu + gv * gv)
        self.grad_sum += torch.where(seen, norm, 0.0).sum(0)
        self.count += seen.sum(0)

    def mean(self) -> torch.Tensor:
        """``[N]`` mean NDC gradient norm over the views that saw each splat (0 if never seen)."""
        return self.grad_sum / self.count.clamp_min(1)


@dataclass(frozen=True)
class DensifyConfig:
    """3DGS densification / pruning thresholds (see the module docstring).

    Attributes:
        grad_threshold: mean NDC position-gradient norm that marks a splat for densification.
        dense_frac: clone below / split above this positional std, as a fraction of the extent.
        min_opacity: prune below this ``sigmoid(a)`` (DESIGN.md: 0.01).
        prune_scale: prune splats whose positional std exceeds this fraction of the extent.

    3DGS uses 0.01 (clone / split) and 0.1 (prune) of the *camera* extent; here the extent is the
    object's radius and orbit cameras sit at 2-3 radii, hence 0.025 and 0.25. (0.1 of the object
    radius pruned the coarse random start of the test ball as "huge" within 10 steps.)
        max_grow: at most this fraction of N is added per step (largest gradients first). Short
            runs densify early, while most errors are still large: on a 32^2 test scene every
            splat passed the threshold at once and the split set needed the rest of the run to recover.
    """

    grad_threshold: float = 2e-4
    dense_frac: float = 0.025
    min_opacity: float = 0.01
    prune_scale: float = 0.25
    max_grow: float = 0.25


def positional_std(splats: Splats6D) -> torch.Tensor:
    """``[N]`` largest positional standard deviation ``sqrt(max diag S_p)``, mm."""
    chol = splats.cholesky()[:, :3, :3]  # [N, 3, 3]; rows of L_pp give the marginal S_p = L_pp L_pp^T
    return torch.sqrt((chol * chol).sum(-1).amax(-1))


@torch.no_grad()
def densify_and_prune(params: SplatParams, stats: GradStats, config: DensifyConfig, extent: float, *,
                      max_splats: int | None = None, densify: bool = True,
                      generator: torch.Generator | None = None) -> dict[str, int]:
    """One densify-and-prune step on ``params`` (Adam state kept consistent, see :meth:`SplatParams.edit`).

    Args:
        params: the trainable splats (edited in place).
        stats: gradient statistics since the last step (not reset here).
        config: thresholds.
        extent: scene radius, mm (the scale of the clone / split / prune thresholds).
        max_splats: cap on the count after this step (``None``: none).
        densify: False to prune only.
        generator: for the split positions (reproducible runs).

    Returns:
        ``{"cloned", "split", "pruned", "n"}``.
    """
    splats = params.detached()
    n = len(splats)
    std = positional_std(splats)
    prune = (splats.opacities < config.min_opacity) | (std > config.prune_scale * extent)
    if bool(prune.all()):  # never empty the set: keep the most opaque splat
        prune[torch.argmax(splats.opacities)] = False
    grads = stats.mean().to(splats.device)
    seen = grads[stats.count.to(grads.device) > 0].float().cpu()
    if log.isEnabledFor(logging.DEBUG) and 0 < seen.numel() < 1 << 24:
        q = torch.quantile(seen, torch.tensor([0.5, 0.9, 0.99]))
        log.debug("densify: N=%d, NDC grad quantiles 50/90/99%% = %s, above %.1e: %d", n,
                  [f"{v:.2e}" for v in q.tolist()], config.grad_threshold, int((grads >= config.grad_threshold).sum()))
    candidates = torch.zeros(n, dtype=torch.bool, device=splats.device)
    if densify:
        candidates = (grads >= config.grad_threshold) & ~prune
    idx = torch.nonzero(candidates)[:, 0]
    room = max(1, int(config.max_grow * n))
    if max_splats is not None:
        room = min(room, max(0, max_splats - (n - int(prune.sum()))))
    idx = idx[torch.argsort(grads[idx], descending=True)][:room]
    small = std[idx] <= config.dense_frac * extent
    clone_idx, split_idx = idx[small], idx[~small]

    p = {k: v.detach() for k, v in params.params.items()}
    new_parts: list[dict[str, torch.Tensor]] = []
    new_labels = []
    if len(clone_idx):
        new_parts.append({k: v[clone_idx] for k, v in p.items()})
        if params.labels is not None:
            new_labels.append(params.labels[clone_idx])
    if len(split_idx):
        # the parent goes (its Adam moments with it, as in 3DGS) and two children are appended,
        # both drawn from the parent's positional marginal
        chol_pp = splats.index(split_idx).cholesky()[:, :3, :3]  # [S, 3, 3]
        z = torch.randn(2, len(split_idx), 3, 1, device=splats.device, generator=generator)
        pos = p["means"][split_idx] + (chol_pp @ z)[..., 0]  # [2, S, 3]
        log_diag = p["chol_log_diag"][split_idx].clone()
        log_diag[:, :3] -= math.log(SPLIT_SHRINK)
        for child in range(2):
            part = {k: v[split_idx] for k, v in p.items()}
            part["means"], part["chol_log_diag"] = pos[child], log_diag
            new_parts.append(part)
            if params.labels is not None:
                new_labels.append(params.labels[split_idx])
        prune[split_idx] = True
    new = {k: torch.cat([part[k] for part in new_parts]) for k in p} if new_parts else None
    params.edit(~prune, new, torch.cat(new_labels) if new_labels else None)
    return {"cloned": int(len(clone_idx)), "split": int(len(split_idx)),
            "pruned": int(prune.sum()) - int(len(split_idx)), "n": len(params)}
