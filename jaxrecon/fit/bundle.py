"""Bundle adjustment: Levenberg-Marquardt over camera poses and track points, in JAX.

Unknowns: per registered view a rotation R_i (cam_from_world) and centre c_i (world), per track a
world point X_t. Residual of observation (t, i) with unit bearing b_ti = K_i^-1 u_ti / |.| (camera
frame): r_ti = f_i (y / |y| - b_ti), y = R_i (X_t - c_i), f_i the view's mean focal length: the
chord between the observed and predicted rays, in pixels (|r| = 2 f sin(angle / 2), the
reprojection error for small angles, yet defined and bounded for points behind a camera, which a
pinhole reprojection is not). Robust cost sum rho(|r|^2) with a kernel of scale sigma (px),
minimised by IRLS weights rho'(s) (no second-order kernel correction, as many solvers do):
  "geman_mcclure" (default): rho(s) = sigma^2 s / (sigma^2 + s), weight (1 + s / sigma^2)^-2: a
    redescending kernel (Black & Rangarajan, IJCV 1996; Zach, "Robust bundle adjustment
    revisited", ECCV 2014): an outlier's pull vanishes as it grows, where Cauchy's only decays
    as 1 / r, so a few structured outliers cannot bend a weakly constrained scene. Being
    non-convex, it is used with a schedule of decreasing sigma (graduated non-convexity,
    `FitSettings.stages_px`). Measured on the fit cases, against Cauchy with the same schedule:
    templeRing 0.153 -> 0.127 deg, every 2nd view 0.102 -> 0.069, no case worse;
  "cauchy": rho(s) = sigma^2 log(1 + s / sigma^2), weight (1 + s / sigma^2)^-1.

Each LM iteration linearises every observation (Jacobians by `jax.jacfwd` of the residual
w.r.t. a local pose update (Exp(w) R_i, c_i + dc) and a point update, vmapped), forms the
normal equations, eliminates the points (3x3 blocks, a Schur complement: the reduced camera system,
assembled from the pairs of observations that share a track, is a dense (6 v', 6 v') solve at
these sizes, v' the views) and solves with Marquardt's damping
lambda diag(J^T J). A step is kept if the cost drops; lambda shrinks after a kept step and grows
after a rejected one. A stage stops on a real convergence test (`StageInfo.message`): relative cost
decrease or relative step below `tolerance`, or no decrease found at the largest lambda.

Scenes where every camera shares one centre (a camera that only turned) have no depth: with
`at_infinity=True` the points are directions (y = R_i X_t, |X_t| = 1) and the centres are fixed.

Approximate intrinsics (`refine_focal`): one more unknown, the log of a focal scale shared by every
view (the principal points held), enters the reduced camera system as one extra row and column.

`run_stage` pads every stage's problem to size buckets (`fit.buckets`): scenes of a similar size
then share one compiled program (and its entry in the persistent compilation cache).

The gauge (a similarity, 7 degrees of freedom) is left free: the damped system is regular and the
gradient has no component along it. `fit.scene` fixes it afterwards.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import program_store, xla_options
from jaxrecon.fit import buckets


class Observations(NamedTuple):
  """Fixed-size observation list (numpy or device arrays; rows with weight 0 are padding or
  outliers).

  view: (n,) int32; track: (n,) int32; bearing: (n, 3) unit observed rays, camera frame;
  focal: (n,) pixels per radian of the observing view; weight: (n,) 1 = used, 0 = ignored;
  pairs: (p, 2) int32 every pair (a, b), a < b, of observations of one track (p = the sum over
    tracks of k (k - 1) / 2, k the track's length): the off-diagonal blocks of the reduced camera
    system. Build it with `observations`.
  """
  view: jax.Array
  track: jax.Array
  bearing: jax.Array
  focal: jax.Array
  weight: jax.Array
  pairs: jax.Array


def observations(view, track, bearing, focal, weight=None, dtype=np.float32) -> Observations:
  """`Observations` of n observations given as host arrays (view, track (n,) int; bearing (n, 3);
  focal (n,)); weight defaults to ones. Builds the track-sharing pairs (host-side numpy)."""
  view, track = np.asarray(view, np.int64), np.asarray(track, np.int64)
  order = np.argsort(track, kind="stable")
  bounds = np.flatnonzero(np.diff(track[order])) + 1
  starts = np.r_[0, bounds] if len(track) else np.zeros(0, np.int64)
  lengths = np.diff(np.r_[starts, len(track)])
  pairs = [np.zeros((0, 2), np.int64)]
  for k in np.unique(lengths[lengths >= 2]):
    first, second = np.triu_indices(k, 1)
    at = starts[lengths == k][:, None]
    pairs.append(np.stack([order[at + first].ravel(), order[at + second].ravel()], 1))
  pairs = np.concatenate(pairs)
  weight = np.ones(len(view)) if weight is None else weight
  # Host arrays: jit moves them at the call, where jnp.asarray would compile one conversion
  # program per array in every new process (~10 ms each).
  dtype = np.dtype(dtype)
  return Observations(view.astype(np.int32), track.astype(np.int32),
                      np.asarray(bearing, dtype), np.asarray(focal, dtype),
                      np.asarray(weight, dtype), pairs.astype(np.int32))


class StageInfo(NamedTuple):
  iterations: int
  converged: bool
  cost_start: float
  cost_end: float
  message: str


_MESSAGES = ("cost change below tolerance", "step below tolerance",
             "no decrease at the largest damping", "iteration limit")


def _hat(w):
  zero = jnp.zeros_like(w[..., 0])
  return jnp.stack([jnp.stack([zero, -w[..., 2], w[..., 1]], -1),
                    jnp.stack([w[..., 2], zero, -w[..., 0]], -1),
                    jnp.stack([-w[..., 1], w[..., 0], zero], -1)], -2)


def exp_so3(w):
  """(..., 3) rotation vectors -> (..., 3, 3) rotations (Rodrigues, smooth at 0)."""
  theta2 = jnp.sum(w * w, -1)[..., None, None]
  small = theta2 < 1e-12
  theta = jnp.sqrt(jnp.where(small, 1.0, theta2))
  a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
  b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / jnp.where(small, 1.0,
                                                                                 theta2))
  k = _hat(w)
  return jnp.eye(3, dtype=w.dtype) + a * k + b * (k @ k)


def _chord(y, bearing, focal, log_scale, refine_focal):
  """(..., 3) residuals of predicted camera-frame rays y (..., 3) against the observed unit
  bearings (..., 3), focal (...) in pixels.

  With refine_focal the focal lengths are f_i exp(log_scale): the observed ray is rebuilt from its
  normalised image point m = b / b_z (principal point held), (m_x / s, m_y / s, 1) normalised, and
  the chord is measured in the refined pixels."""
  ray = y / jnp.sqrt(jnp.sum(y * y, -1, keepdims=True) + 1e-30)
  focal = jnp.asarray(focal)[..., None]
  if not refine_focal:
    return focal * (ray - bearing)
  s = jnp.exp(log_scale)
  m = jnp.stack([bearing[..., 0] / (bearing[..., 2] * s), bearing[..., 1] / (bearing[..., 2] * s),
                 jnp.ones_like(bearing[..., 2])], -1)
  return focal * s * (ray - m / jnp.sqrt(jnp.sum(m * m, -1, keepdims=True)))


def _residual(dcam, dpoint, dlog, rot, centre, point, bearing, focal, log_scale, at_infinity,
              refine_focal):
  """(3,) residual (`_chord`) of one observation at the local update (dcam (6,), dpoint (3,),
  dlog ())."""
  r = exp_so3(dcam[:3]) @ rot
  x = point + dpoint
  y = r @ x if at_infinity else r @ (x - (centre + dcam[3:]))
  return _chord(y, bearing, focal, log_scale + dlog, refine_focal)


def _residuals(rot, centre, points, obs, at_infinity, log_scale=0.0, refine_focal=False):
  """(n, 3) residuals of every observation at the current unknowns, without the Jacobians (the
  cost of a trial step needs only these; tracing the Jacobians and the zero-update rotation there
  too was about a third of the LM program's tracing)."""
  x = points[obs.track] if at_infinity else points[obs.track] - centre[obs.view]
  y = jnp.einsum("nij,nj->ni", rot[obs.view], x)
  return _chord(y, obs.bearing, obs.focal, jnp.asarray(log_scale, points.dtype), refine_focal)


def _linearize(rot, centre, points, obs, at_infinity, log_scale=0.0, refine_focal=False):
  """Residuals (n, 3) and Jacobians (n, 3, 6), (n, 3, 3), (n, 3) (the last w.r.t. the log focal
  scale; zeros unless refine_focal) of every observation."""
  zeros6 = jnp.zeros((6,), points.dtype)
  zeros3 = jnp.zeros((3,), points.dtype)
  zero = jnp.zeros((), points.dtype)
  log_scale = jnp.asarray(log_scale, points.dtype)

  def one(view, track, bearing, focal):
    args = (rot[view], centre[view], points[track], bearing, focal, log_scale, at_infinity,
            refine_focal)
    f = lambda dc, dp, dl: _residual(dc, dp, dl, *args)
    if refine_focal:
      jc, jp, jl = jax.jacfwd(f, argnums=(0, 1, 2))(zeros6, zeros3, zero)
    else:
      (jc, jp), jl = jax.jacfwd(f, argnums=(0, 1))(zeros6, zeros3, zero), zeros3
    return f(zeros6, zeros3, zero), jc, jp, jl

  return jax.vmap(one)(obs.view, obs.track, obs.bearing, obs.focal)


KERNELS = ("geman_mcclure", "cauchy")


def robust_cost(res, weight, sigma, kernel="geman_mcclure"):
  """sum_w rho(|r|^2) / 2 of the residuals (n, 3) with the named kernel of scale sigma (pixels)."""
  s = jnp.sum(res * res, -1)
  if kernel == "cauchy":
    return 0.5 * jnp.sum(weight * sigma ** 2 * jnp.log1p(s / sigma ** 2))
  return 0.5 * jnp.sum(weight * sigma ** 2 * s / (sigma ** 2 + s))


def irls_weight(res, sigma, kernel="geman_mcclure"):
  """(n,) rho'(|r|^2) of the residuals (n, 3): the weight of each observation in a Gauss-Newton
  step of the robust cost."""
  base = 1.0 / (1.0 + jnp.sum(res * res, -1) / sigma ** 2)
  return base if kernel == "cauchy" else base ** 2


def _apply(rot, centre, points, dc, dp, at_infinity):
  rot = exp_so3(dc[:, :3]) @ rot
  points = points + dp
  if at_infinity:
    points = points / jnp.linalg.norm(points, axis=-1, keepdims=True)
  else:
    centre = centre + dc[:, 3:]
  return rot, centre, points


def _bmm_t(x, y):
  """(m, a, c) x (m, b, c) -> (m, a, b): x_k y_k^T per k. Written as c broadcast products: XLA:CPU
  runs this 3-4x faster than the batched dot of an einsum for these tiny blocks."""
  return sum(x[:, :, None, c] * y[:, None, :, c] for c in range(x.shape[-1]))


def _inverse_spd3(m):
  """(t, 3, 3) inverses of symmetric positive definite 3x3 blocks, in closed form (the adjugate)
  after scaling to a unit diagonal (so the determinant stays in [0, 1] whatever the blocks'
  magnitude): 4096 blocks in 0.08 ms against 1.1 ms for batched LU (XLA:CPU), as accurate
  (float32 vs float64: 3.3e-5 relative, LU 4.2e-5)."""
  d = jax.lax.rsqrt(jnp.diagonal(m, axis1=-2, axis2=-1))                # (t, 3)
  n = m * d[:, :, None] * d[:, None, :]
  a, b, c, e, f, i = n[:, 0, 0], n[:, 0, 1], n[:, 0, 2], n[:, 1, 1], n[:, 1, 2], n[:, 2, 2]
  co = jnp.stack([e * i - f * f, c * f - b * i, b * f - c * e,
                  c * f - b * i, a * i - c * c, b * c - a * f,
                  b * f - c * e, b * c - a * f, a * e - b * b], -1).reshape(-1, 3, 3)
  det = a * co[:, 0, 0] + b * co[:, 0, 1] + c * co[:, 0, 2]
  return co / det[:, None, None] * d[:, :, None] * d[:, None, :]


def _solve(system, lam, obs, fix_rotations=False, refine_focal=False):
  """The damped Schur-complement solve: (dc (v, 6), dp (t, 3), dlog ()) for damping lam
  (rotation updates forced to 0 when fix_rotations; dlog = 0 unless refine_focal)."""
  u, vblocks, wblk, gc, gp, ucl, ull, wl, gl = system
  v, t = u.shape[0], vblocks.shape[0]
  eye6, eye3 = jnp.eye(6, dtype=u.dtype), jnp.eye(3, dtype=u.dtype)
  diag_u = jnp.diagonal(u, axis1=-2, axis2=-1)
  diag_v = jnp.diagonal(vblocks, axis1=-2, axis2=-1)
  # Marquardt scaling, floored so that unconstrained directions (the centres of a rotation-only
  # scene, a point's radial direction) stay regular without moving.
  ud = u + eye6 * (lam * diag_u + 1e-9 * jnp.max(diag_u) + 1e-12)[..., None]
  vd = vblocks + eye3 * (lam * diag_v + 1e-9 * jnp.max(diag_v) + 1e-12)[..., None]
  vinv = _inverse_spd3(vd)                                            # (t, 3, 3)
  # W V^-1 per observation (W_a: the (6, 3) camera-point block of observation a). The reduced
  # system S = U - W V^-1 W^T has a (6, 6) block (i, j) for each pair of observations of one track
  # seen by views i and j: summed over the observations (i = j) and over `obs.pairs` (i != j, and
  # its transpose), O(sum of squared track lengths) work instead of the dense (6 v, 3 t) x
  # (3 t, 6 v) product (templeRing: the damped solve 6.2 -> 1.7 ms).
  wv = _bmm_t(wblk, vinv[obs.track])                                  # (n, 6, 3)
  a, b = obs.pairs[:, 0], obs.pairs[:, 1]
  cross = jax.ops.segment_sum(_bmm_t(wv[a], wblk[b]), obs.view[a] * v + obs.view[b], v * v)
  own = jax.ops.segment_sum(_bmm_t(wv, wblk), obs.view, v)
  cross = cross.reshape(v, v, 6, 6) + cross.reshape(v, v, 6, 6).transpose(1, 0, 3, 2)
  reduced = (cross + jnp.eye(v, dtype=u.dtype)[:, :, None, None] * own[:, None]).transpose(
      0, 2, 1, 3).reshape(6 * v, 6 * v)
  s = (jnp.einsum("iab,ij->iajb", ud, jnp.eye(v, dtype=u.dtype)).reshape(6 * v, 6 * v)
       - reduced)
  # sum over a track's observations of W V^-1 x_track, per view: (v, 6) for x (t, 3).
  per_view = lambda x: jax.ops.segment_sum(jnp.einsum("nab,nb->na", wv, x[obs.track]),
                                           obs.view, v)
  rhs = (-gc + per_view(gp)).reshape(-1)
  # With fix_rotations the rotation rows and columns are replaced by the identity (and their
  # right-hand side by 0): the same solve, with the rotation updates pinned at 0. A traced flag,
  # so the positions-only warm-up and the full stages share one compiled program (1.1 s of
  # compilation each on 2 CPU cores).
  turn = 1.0 - jnp.asarray(fix_rotations, s.dtype)
  free = jnp.tile(jnp.concatenate([jnp.full(3, turn), jnp.ones(3, s.dtype)]), v)
  s = s * free[:, None] * free[None, :] + jnp.diag(1.0 - free)
  rhs = rhs * free
  if refine_focal:
    # One more unknown shared by every view (the log focal scale): the reduced system gains a
    # row and column, its coupling to the points eliminated like the cameras'.
    vinv_wl = jnp.einsum("tab,tb->ta", vinv, wl)                      # (t, 3)
    s_cl = (ucl - per_view(wl)).reshape(-1) * free
    s_ll = ull * (1.0 + lam) + 1e-12 - jnp.sum(wl * vinv_wl)
    s = jnp.block([[s, s_cl[:, None]], [s_cl[None, :], s_ll[None, None]]])
    rhs = jnp.concatenate([rhs, (-gl + jnp.sum(vinv_wl * gp))[None]])
    sol = jnp.linalg.solve(0.5 * (s + s.T), rhs)
    dc, dlog = sol[:-1].reshape(v, 6), sol[-1]
  else:
    dc, dlog = jnp.linalg.solve(0.5 * (s + s.T), rhs).reshape(v, 6), jnp.zeros((), u.dtype)
  back = jax.ops.segment_sum(jnp.einsum("nab,na->nb", wblk, dc[obs.view]), obs.track, t)
  dp = jnp.einsum("tab,tb->ta", vinv, -gp - back - wl * dlog)
  return dc, dp, dlog


def _system(rot, centre, points, obs, sigma, at_infinity, kernel, log_scale=0.0,
            refine_focal=False):
  """Normal-equation blocks (U (v,6,6), V (t,3,3), W (n,6,3) per observation, g_c (v,6),
  g_p (t,3), and for the log focal scale U_cl (v,6), U_ll (), W_l (t,3), g_l () (zeros unless
  refine_focal)), cost."""
  v, t = rot.shape[0], points.shape[0]
  res, jc, jp, jl = _linearize(rot, centre, points, obs, at_infinity, log_scale, refine_focal)
  w = obs.weight * irls_weight(res, sigma, kernel)
  wjc = w[:, None, None] * jc
  u = jax.ops.segment_sum(jnp.einsum("nai,naj->nij", wjc, jc), obs.view, v)
  vb = jax.ops.segment_sum(jnp.einsum("nai,naj->nij", w[:, None, None] * jp, jp), obs.track, t)
  wblk = jnp.einsum("nai,naj->nij", wjc, jp)                          # (n, 6, 3)
  gc = jax.ops.segment_sum(jnp.einsum("nai,na->ni", wjc, res), obs.view, v)
  gp = jax.ops.segment_sum(jnp.einsum("nai,na->ni", w[:, None, None] * jp, res), obs.track, t)
  wjl = w[:, None] * jl
  ucl = jax.ops.segment_sum(jnp.einsum("nai,na->ni", wjc, jl), obs.view, v)
  wl = jax.ops.segment_sum(jnp.einsum("na,nai->ni", wjl, jp), obs.track, t)
  blocks = (u, vb, wblk, gc, gp, ucl, jnp.sum(wjl * jl), wl, jnp.sum(wjl * res))
  return blocks, robust_cost(res, obs.weight, sigma, kernel)


def _zero_system(v, t, n, dtype):
  """Zeros shaped like `_system`'s blocks (its docstring lists them) for v views, t tracks and n
  observations: the loop's first state, without tracing `_system` once more for its shapes."""
  shapes = ((v, 6, 6), (t, 3, 3), (n, 6, 3), (v, 6), (t, 3), (v, 6), (), (t, 3), ())
  return tuple(jnp.zeros(shape, dtype) for shape in shapes)


def lm_stage(rot, centre, points, obs, sigma, log_scale=0.0, *, max_iterations=50,
             tolerance=1e-6, at_infinity=False, kernel="geman_mcclure", fix_rotations=False,
             refine_focal=False):
  """One robust stage of LM at the kernel scale `sigma` (pixels, traced); with fix_rotations
  (traced) only the centres and points move; with refine_focal also the log of a focal scale
  shared by every view (focal_i = obs.focal_i exp(log_scale)). A function to trace:
  max_iterations, at_infinity, kernel and refine_focal are static (`run_stage` compiles it).

  Args:
    rot: (v, 3, 3) cam_from_world rotations; centre: (v, 3); points: (t, 3) world points (unit
      directions if at_infinity); obs: `Observations`; log_scale: () start of the log focal scale.
  Returns:
    (rot, centre, points, log_scale, iterations, cost_start, cost_end, reason) with reason an
    index into `_MESSAGES` (int32).
  """
  sigma = jnp.asarray(sigma, points.dtype)
  log_scale = jnp.asarray(log_scale, points.dtype)
  focal = refine_focal
  system_of = lambda r, c, p, l: _system(r, c, p, obs, sigma, at_infinity, kernel, l, focal)

  def cost_of(r, c, p, l):
    return robust_cost(_residuals(r, c, p, obs, at_infinity, l, focal), obs.weight, sigma, kernel)

  # The normal equations are built in one place, at the top of an iteration whose point moved
  # (`fresh` false): one copy of the linearisation in the program instead of two (before the
  # loop and after each kept step), which is most of its XLA compile time (1.2 s on 2 CPU cores).
  cost0 = cost_of(rot, centre, points, log_scale)
  # The step test's scale counts only the unknowns some used observation constrains, so that
  # padding (`run_stage`) and dropped outliers leave it alone.
  seen_view = jax.ops.segment_sum(obs.weight, obs.view, rot.shape[0]) > 0
  seen_track = jax.ops.segment_sum(obs.weight, obs.track, points.shape[0]) > 0
  system0 = _zero_system(rot.shape[0], points.shape[0], obs.view.shape[0], points.dtype)
  state = dict(rot=rot, centre=centre, points=points, log_scale=log_scale, system=system0,
               fresh=jnp.bool_(False), cost=cost0, lam=jnp.asarray(1e-4, points.dtype),
               it=jnp.int32(0), reason=jnp.int32(-1))

  def body(st):
    system = jax.lax.cond(st["fresh"], lambda: st["system"],
                          lambda: system_of(st["rot"], st["centre"], st["points"],
                                            st["log_scale"])[0])
    dc, dp, dl = _solve(system, st["lam"], obs, fix_rotations, focal)
    r, c, p = _apply(st["rot"], st["centre"], st["points"], dc, dp, at_infinity)
    l = st["log_scale"] + dl
    new_cost = cost_of(r, c, p, l)
    ok = jnp.isfinite(new_cost) & (new_cost < st["cost"])
    rel = (st["cost"] - new_cost) / jnp.maximum(st["cost"], 1e-30)
    size = jnp.sqrt(jnp.sum(dc[:, :3] ** 2) + jnp.sum(dp ** 2) + jnp.sum(dc[:, 3:] ** 2) + dl ** 2)
    scale = jnp.sqrt(jnp.sum(jnp.where(seen_track, jnp.sum(st["points"] ** 2, -1), 0.0))
                     + jnp.sum(jnp.where(seen_view, jnp.sum(st["centre"] ** 2, -1), 0.0))
                     + jnp.sum(seen_view))
    pick = lambda a, b: jax.tree.map(lambda x, y: jnp.where(ok, x, y), a, b)
    rot_, centre_, points_, l_, cost = pick((r, c, p, l, new_cost),
                                            (st["rot"], st["centre"], st["points"],
                                             st["log_scale"], st["cost"]))
    lam = jnp.where(ok, jnp.maximum(st["lam"] / 3.0, 1e-9), st["lam"] * 4.0)
    reason = jnp.where(ok & (rel < tolerance), 0,
                       jnp.where(ok & (size < tolerance * scale), 1,
                                 jnp.where(~ok & (lam > 1e8), 2, -1)))
    return dict(rot=rot_, centre=centre_, points=points_, log_scale=l_, system=system,
                fresh=~ok, cost=cost, lam=lam, it=st["it"] + 1, reason=reason.astype(jnp.int32))

  def cond(st):
    return (st["it"] < max_iterations) & (st["reason"] < 0)

  st = jax.lax.while_loop(cond, body, state)
  reason = jnp.where(st["reason"] < 0, 3, st["reason"])
  return (st["rot"], st["centre"], st["points"], st["log_scale"], st["it"], cost0, st["cost"],
          reason)


def run_stage(rot, centre, points, obs, sigma, log_scale=0.0, *, max_iterations, tolerance,
              at_infinity, kernel="geman_mcclure", fix_rotations=False, refine_focal=False,
              bucketed=True):
  """`lm_stage` with host-side results: (rot, centre, points numpy float64, log_scale float,
  `StageInfo`). Host (numpy) inputs; with `bucketed` they are padded to size buckets
  (`buckets.pad_problem`), so that scenes of similar size share one compiled program."""
  v, t = len(rot), len(points)
  args = (rot, centre, points, obs)
  args = buckets.pad_problem(*args) if bucketed else args
  # Through the program store: a new process loads the traced and lowered program of an earlier
  # one instead of tracing it again (about 0.2 s; the persistent cache then serves XLA's code).
  out = program_store.call(
      lm_stage, *args, sigma, log_scale, tolerance=tolerance, fix_rotations=fix_rotations,
      static=dict(max_iterations=max_iterations, at_infinity=at_infinity, kernel=kernel,
                  refine_focal=refine_focal), compiler_options=xla_options.options())
  rot, centre, points, log_scale, it, c0, c1, reason = jax.device_get(out)
  info = StageInfo(iterations=int(it), converged=int(reason) < 3, cost_start=float(c0),
                   cost_end=float(c1), message=_MESSAGES[int(reason)])
  return (np.asarray(rot[:v], np.float64), np.asarray(centre[:v], np.float64),
          np.asarray(points[:t], np.float64), float(log_scale), info)


def chord_errors_px(rot, centre, points, view, track, bearing, focal, at_infinity=False,
                    log_scale=0.0):
  """Host-side (numpy float64) |r| of each observation (pixels; see the module docstring),
  with the focal lengths scaled by exp(log_scale) (the bearings rebuilt accordingly)."""
  x = points[track]
  y = np.einsum("nij,nj->ni", rot[view], x if at_infinity else x - centre[view])
  y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-300)
  if log_scale:
    s = np.exp(log_scale)
    m = np.stack([bearing[:, 0] / (bearing[:, 2] * s), bearing[:, 1] / (bearing[:, 2] * s),
                  np.ones(len(bearing))], 1)
    return focal * s * np.linalg.norm(y - m / np.linalg.norm(m, axis=1, keepdims=True), axis=1)
  return focal * np.linalg.norm(y - bearing, axis=1)
