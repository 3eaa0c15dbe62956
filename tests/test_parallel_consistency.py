"""Every loss gives the same values under jit, vmap, pmap, a sharded jit over a `Mesh` of 8 CPU
devices and shard_map (acceptance criterion: equal to 1e-6 relative, float32).

For each loss a batch of 8 random but sensible float32 examples is built once. The reference is
the loss of one example at a time (a jitted function called in a Python loop, so one compile).
`test_consistency[loss]` then runs these checks (one test per loss so that pytest-xdist cannot
spread one loss's compiled functions over workers; a failure lists every failing check):

  vmap        jit(vmap(per-example loss)) over the batch axis          == reference per example
  pmap        pmap(per-example loss), one example per device            == reference per example
  mesh jit    jit(batched loss) on inputs sharded over the "data" axis  == same jit, unsharded;
              the output is a fully replicated, fully addressable scalar
  shard_map   each device computes its local loss; pmean over "data"    == mean of the references;
              psum-recombined weighted mean (weights = counts / weight sums from the diagnostics)
                                                                        == unsharded batched loss
  recombine   the batched loss (which pools every example: a global masked mean, not a mean of
              per-example means) == the weighted mean of the per-example references, weights taken
              from their diagnostics. This is the documented way to split a batch by hand.

  grad        for relative_depth_loss, registration_loss ("angular", "triangulation") and
              cmc_loss: jax.grad of the batched loss under the sharded jit == unsharded (rtol 1e-5)

Per-example weights differ on purpose (mask counts, label counts, confidences, visibility), so the
global loss is not the plain mean of per-example losses; "recombine" and the weighted shard_map
check verify that the diagnostics (num_valid, weight_sum, num_terms, ...) recombine it exactly.

Gradients also trace inside shard_map with its default check_vma=True (the scan carries and
default weights of `triangulate` must be typed per-device like their inputs).

Tolerances. Loss values: rtol 1e-6 (about 8 float32 ulps) plus atol 1e-7 * max|reference| over
the batch. The absolute floor is only for values near 0 (a nearly cancelling sum: the -alpha log W
term of the ambiguity-aware loss has either sign; triangulated coordinates near the world origin):
there a change of summation order moves the result by a few ulps *of the summands*, whose size is
that of the typical value, and no relative bound on the tiny result can express that. At 1e-7 of
the batch's largest value it never loosens the relative bound by more than 10% for values within
an order of magnitude of it (all losses here; measured differences are below 3.1e-7 relative).
Gradients: rtol 1e-5 plus atol 1e-6 * max|g|, by the same argument (an entry near 0 is a
difference of O(max|g|) contributions).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxrecon.geometry.triangulation import triangulate
from jaxrecon.losses.depth import relative_depth_loss, ssi_depth_loss
from jaxrecon.losses.registration import registration_loss
from jaxrecon.losses.segmentation import (cmc_loss, consistency_kl, masked_cross_entropy,
                                          student_teacher_loss)
from jaxrecon.losses.supervised import supervised_loss

B = 8  # batch = number of devices: one example per device under pmap / shard_map
RTOL, ATOL_REL = 1e-6, 1e-7
GRAD_RTOL, GRAD_ATOL_REL = 1e-5, 1e-6

f32 = np.float32
SEG_N = 48  # entries per segmentation example


# --------------------------------------------------------------------------------------------------
# input builders (numpy, float64 maths, float32 outputs; leading axis = batch of 8)


def _rodrigues(aa):
  """(3,) axis-angle -> (3, 3) rotation, float64."""
  theta = np.linalg.norm(aa)
  if theta < 1e-12:
    return np.eye(3)
  k = aa / theta
  kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
  return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * kx @ kx


def _pose(rot, centre):
  """world_from_cam (4, 4) from its rotation and the camera centre."""
  out = np.eye(4)
  out[:3, :3], out[:3, 3] = rot, centre
  return out


def _look_at(centre, target):
  """world_from_cam rotation of an OpenCV camera at `centre` looking at `target` (z forward)."""
  z = (target - centre) / np.linalg.norm(target - centre)
  x = np.cross([0.0, 1.0, 0.0], z)
  x /= np.linalg.norm(x)
  return np.stack([x, np.cross(z, x), z], 1)  # columns: camera axes in world coordinates


def depth_batch(seed=0, v=2, h=8, w=10):
  """pred, mono (smooth-ish positive maps), confidence in (0.2, 1.8), mask with varying counts."""
  rng = np.random.default_rng(seed)
  shape = (B, v, h, w)
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
  base = 2.0 + rng.uniform(-1, 1, (B, v, 1, 1)) * xx + rng.uniform(-1, 1, (B, v, 1, 1)) * yy
  pred = base * rng.uniform(0.5, 3.0, (B, v, 1, 1)) + 0.3 * rng.uniform(size=shape)
  mono = 1.0 / (base + 0.2 * rng.normal(size=shape))  # inverse-depth-like, different scale
  conf = rng.uniform(0.2, 1.8, size=shape)
  mask = rng.uniform(size=shape) > rng.uniform(0.05, 0.4, (B, 1, 1, 1))
  return pred.astype(f32), mono.astype(f32), conf.astype(f32), mask


def supervised_batch(seed=1, v=3, h=6, w=8):
  rng = np.random.default_rng(seed)
  shape = (B, v, h, w)
  gt = rng.uniform(2.0, 6.0, size=shape)
  scale = rng.uniform(0.3, 3.0, (B, 1, 1, 1))
  pred = gt * scale * (1.0 + 0.1 * rng.normal(size=shape))
  conf = rng.uniform(0.5, 1.5, size=shape)
  mask = rng.uniform(size=shape) > 0.15
  gt_pose = np.zeros((B, v, 4, 4))
  pred_pose = np.zeros((B, v, 4, 4))
  for b in range(B):
    for i in range(v):
      rot = _rodrigues(rng.uniform(-0.4, 0.4, 3))
      centre = rng.normal(size=3)
      gt_pose[b, i] = _pose(rot, centre)
      pred_pose[b, i] = _pose(_rodrigues(rng.normal(scale=0.05, size=3)) @ rot,
                              scale[b, 0, 0, 0] * (centre + 0.05 * rng.normal(size=3)))
  return (pred.astype(f32), conf.astype(f32), pred_pose.astype(f32), gt.astype(f32),
          gt_pose.astype(f32), mask)


def segmentation_batch(seed=2, n=SEG_N, k=5):
  """Student / teacher logits, sparse labels (ignore 255, a few out of range), confidences,
  masks."""
  rng = np.random.default_rng(seed)
  student = rng.normal(size=(B, n, k))
  # A sharper teacher, so that some (not all) max-probabilities pass tau = 0.95.
  teacher = 0.7 * student + rng.normal(size=(B, n, k)) * rng.uniform(1.0, 5.0, (B, n, 1))
  labels = rng.integers(0, k, size=(B, n))
  labels = np.where(rng.uniform(size=(B, n)) < rng.uniform(0.5, 0.9, (B, 1)), 255, labels)
  labels = np.where(rng.uniform(size=(B, n)) < 0.03, k + 2, labels)  # out of range: ignored
  recon_conf = rng.uniform(0.0, 2.0, size=(B, n))
  valid = rng.uniform(size=(B, n)) > 0.2
  unlabelled = labels == 255
  return {"student": student.astype(f32), "teacher": teacher.astype(f32),
          "labels": labels.astype(np.int32), "recon_conf": recon_conf.astype(f32),
          "valid": valid, "unlabelled": unlabelled}


def registration_batch(seed=3, t=24, v=3, h=32, w=40):
  """A small scene per example: t points around the origin, v cameras at distance ~4 looking at
  them; tracks = projections + 0.3 px noise (NaN where not visible), binary visibility with ~20%
  zeros, smooth (planar + ripple) depth maps, predicted poses = true poses slightly perturbed."""
  rng = np.random.default_rng(seed)
  f, cx, cy = 40.0, (w - 1) / 2, (h - 1) / 2
  k_mat = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
  tracks = np.zeros((B, t, v, 2))
  vis = np.zeros((B, t, v))
  depth = np.zeros((B, v, h, w))
  pred_pose = np.zeros((B, v, 4, 4))
  true_cam_from_world = np.zeros((B, v, 4, 4))
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  for b in range(B):
    points = rng.uniform(-1.0, 1.0, size=(t, 3))
    for i in range(v):
      centre = np.array([0.0, 0.0, -4.0]) + rng.uniform(-1, 1, 3) * np.array([1.5, 0.5, 0.3])
      rot = _look_at(centre, rng.normal(scale=0.1, size=3))
      world_from_cam = _pose(rot, centre)
      cam_from_world = np.linalg.inv(world_from_cam)
      true_cam_from_world[b, i] = cam_from_world
      x_cam = points @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
      pix = x_cam[:, :2] / x_cam[:, 2:] * f + np.array([cx, cy])
      tracks[b, :, i] = pix + 0.3 * rng.normal(size=(t, 2))
      vis[b, :, i] = rng.uniform(size=t) > 0.2
      z0 = np.median(x_cam[:, 2])
      depth[b, i] = (z0 + 0.01 * rng.normal() * (xx - cx) + 0.01 * rng.normal() * (yy - cy)
                     + 0.05 * np.sin(xx / 5.0 + rng.uniform(0, 6)) * np.cos(yy / 7.0))
      pred_pose[b, i] = _pose(_rodrigues(rng.normal(scale=0.01, size=3)) @ rot,
                              centre + 0.05 * rng.normal(size=3))
  tracks = np.where(vis[..., None] > 0, tracks, np.nan)  # padding may hold NaN
  intrinsics = np.broadcast_to(k_mat, (B, v, 3, 3))
  proj = np.einsum("ij,bvjk->bvik", k_mat, true_cam_from_world[..., :3, :])
  return {"tracks": tracks.astype(f32), "vis": vis.astype(f32), "depth": depth.astype(f32),
          "world_from_cam": pred_pose.astype(f32), "intrinsics": intrinsics.astype(f32),
          "proj": proj.astype(f32)}


# --------------------------------------------------------------------------------------------------
# cases: inputs (tuple of batched arrays), loss fn(*inputs) -> (value, diag) on one example or a
# batch, and `combine(loss, diag, total)`: the global batched loss from per-example (or per-shard)
# losses and diagnostics, with `total` summing over examples (np.sum or lax.psum).


def _weighted(key):
  def combine(loss, diag, total):
    return total(loss * diag[key]) / total(diag[key])
  return combine


def _combine_supervised(loss, diag, total):
  # depth term pooled over valid pixels; camera term over view pairs (the same number per example)
  depth = total(diag["depth_term"] * diag["num_valid"]) / total(diag["num_valid"])
  camera = total(diag["camera_term"]) / total(jnp.ones_like(diag["camera_term"]))
  return depth + camera


def _combine_kl(num_valid):
  def combine(loss, diag, total):
    nv = num_valid(diag)
    w_t = total(diag["w_t"] * nv) / total(nv)
    kl = total(diag["kl"] * diag["num_unlabelled"]) / total(diag["num_unlabelled"])
    return w_t * kl
  return combine


def _combine_student_teacher(loss, diag, total):
  # weights = valid, so weight_sum counts the valid labelled entries; valid = those + unlabelled
  ce = _weighted("weight_sum")(diag["ce"], diag, total)
  return 0.5 * ce + 0.5 * _combine_kl(lambda d: d["weight_sum"] + d["num_unlabelled"])(
      loss, diag, total)


def _registration_case(form):
  def inputs():
    r = registration_batch()
    return (r["tracks"], r["vis"], r["depth"], r["world_from_cam"], r["intrinsics"])
  # binary visibility: the pooled weight of a form equals its num_terms count
  return inputs, functools.partial(registration_loss, form=form), _weighted("num_terms")


def _seg_inputs(*keys):
  return lambda: tuple(segmentation_batch()[key] for key in keys)


def _triangulate_inputs():
  r = registration_batch()
  return (r["proj"], np.swapaxes(r["tracks"], -2, -3), np.swapaxes(r["vis"], -1, -2))


CASES = {
    "relative_depth_ambiguity": (
        lambda: depth_batch(),
        functools.partial(relative_depth_loss, alpha=1.0, ambiguity=True),
        _weighted("num_valid")),
    "relative_depth_plain": (
        lambda: depth_batch(),
        functools.partial(relative_depth_loss, ambiguity=False),
        _weighted("num_valid")),
    "ssi_depth": (
        lambda: (lambda p, m, c, k: (p, m, k))(*depth_batch()),
        ssi_depth_loss,
        _weighted("num_valid")),
    "supervised": (supervised_batch, supervised_loss, _combine_supervised),
    "masked_cross_entropy": (
        _seg_inputs("student", "labels"), masked_cross_entropy, _weighted("weight_sum")),
    "masked_cross_entropy_weighted": (
        _seg_inputs("student", "labels", "recon_conf"),
        lambda s, l, w: masked_cross_entropy(s, l, weights=w), _weighted("weight_sum")),
    "consistency_kl": (
        _seg_inputs("student", "teacher", "unlabelled"), consistency_kl,
        _combine_kl(lambda d: SEG_N * jnp.ones_like(d["w_t"]))),  # no padding: n valid
    "student_teacher": (
        _seg_inputs("student", "teacher", "labels", "valid"),
        lambda s, t, l, v: student_teacher_loss(s, t, l, valid=v), _combine_student_teacher),
    "cmc": (
        _seg_inputs("student", "teacher", "recon_conf", "valid"), cmc_loss,
        _weighted("weight_sum")),
    **{f"registration_{form}": _registration_case(form)
       for form in ("angular", "triangulation", "l2_3d", "pixel")},
    # not a loss: points (n, 3) per example; compared elementwise, no recombination
    "triangulate": (_triangulate_inputs, lambda *a: (triangulate(*a), {}), None),
}

# argnums of the differentiated inputs of the gradient checks
GRAD_CASES = {
    "relative_depth_ambiguity": (0, 2),            # pred_depth, confidence
    "registration_angular": (2, 3),                # depth, world_from_cam
    "registration_triangulation": (2, 3),
    "cmc": (0,),                                   # student_logits
}


# --------------------------------------------------------------------------------------------------
# helpers


def _max_rel(actual, expected, atol=0.0):
  """max |a - e| / max(|e|, atol / RTOL): the relative difference, floored where e is near 0."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  floor = max(atol / RTOL, np.finfo(np.float64).tiny)
  return float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), floor)))


def assert_close(actual, expected, rtol=RTOL, atol=None, what=""):
  """allclose with rtol and, by default, atol = ATOL_REL * max|expected| (see the module doc)."""
  actual, expected = np.asarray(actual), np.asarray(expected)
  if atol is None:
    atol = ATOL_REL * float(np.max(np.abs(expected)))
  assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
  assert np.all(np.isfinite(actual)), f"{what}: non-finite values {actual}"
  np.testing.assert_allclose(
      actual, expected, rtol=rtol, atol=atol,
      err_msg=f"{what}: max relative difference {_max_rel(actual, expected, atol):.3g}")


def _grad_atol(ref):
  return GRAD_ATOL_REL * float(np.max(np.abs(ref)))


def make_mesh():
  devices = jax.devices()
  if len(devices) < B:
    pytest.skip(f"needs {B} devices (XLA_FLAGS=--xla_force_host_platform_device_count={B})")
  return Mesh(np.array(devices[:B]), ("data",))


class Case:
  """Inputs, reference results and compiled variants of one loss, each computed once and cached.

  Compiles per case: the per-example reference, one unsharded jit (vmap values, batched value and,
  for GRAD_CASES, its gradient), the same batched jit on sharded inputs, pmap, shard_map.
  """

  def __init__(self, name, mesh):
    self.name, self.mesh = name, mesh
    build, self.fn, self.combine = CASES[name]
    self.inputs = tuple(np.asarray(x) for x in build())
    assert all(x.shape[0] == B for x in self.inputs)
    for x in self.inputs:
      assert x.dtype in (np.float32, np.int32, np.bool_), (name, x.dtype)
    self.value = lambda *a: self.fn(*a)[0]
    self.argnums = GRAD_CASES.get(name)
    if self.argnums is None:
      self.batched_fn = self.value
    else:  # (value, grads): XLA shares the forward pass, so the gradient costs no extra compile
      self.batched_fn = jax.value_and_grad(self.value, argnums=self.argnums)
    self.sharding = NamedSharding(mesh, P("data"))

  def example(self, b):
    return tuple(x[b] for x in self.inputs)

  @functools.cached_property
  def reference(self):
    """Per-example (values (B, ...), diagnostics {key: (B,)}), one example at a time."""
    one = jax.jit(self.fn)
    out = [jax.device_get(one(*self.example(b))) for b in range(B)]
    values = np.stack([o[0] for o in out])
    diags = {k: np.stack([o[1][k] for o in out]) for k in out[0][1]}
    return values, diags

  @functools.cached_property
  def unsharded(self):
    """(vmap values, batched output) on inputs committed to one device, in one jit."""
    dev = jax.devices()[0]
    args = [jax.device_put(x, dev) for x in self.inputs]
    both = jax.jit(lambda *a: (jax.vmap(self.value)(*a), self.batched_fn(*a)))
    return jax.device_get(both(*args))

  @functools.cached_property
  def sharded(self):
    """Batched output of the same jit on inputs sharded over the mesh (not fetched)."""
    args = [jax.device_put(x, self.sharding) for x in self.inputs]
    assert all(len(a.sharding.device_set) == B and not a.sharding.is_fully_replicated
               for a in args)
    return jax.jit(self.batched_fn)(*args)

  def batched_value(self, out):
    return out if self.argnums is None else out[0]


@pytest.fixture(scope="module")
def cases():
  """Lazily built Case objects, shared by every test of this module."""
  mesh = make_mesh()
  store = {}

  def get(name):
    if name not in store:
      store[name] = Case(name, mesh)
    return store[name]
  return get


@pytest.fixture(params=list(CASES))
def case(request, cases):
  return cases(request.param)


# --------------------------------------------------------------------------------------------------
# loss values


def check_reference(case):
  """The per-example reference is float32, finite and non-trivial."""
  values, _ = case.reference
  assert values.dtype == np.float32, values.dtype
  assert np.all(np.isfinite(values))
  if case.combine is not None:
    assert np.all(values != 0), "inputs should give a non-trivial loss in every example"


def check_vmap(case):
  """jit(vmap(per-example loss)) == reference per example."""
  assert_close(case.unsharded[0], case.reference[0], what=f"{case.name} vmap")


def check_pmap(case):
  """pmap(per-example loss), one example per device == reference per example."""
  out = jax.pmap(case.value, devices=list(case.mesh.devices.flat))(*case.inputs)
  assert out.shape[0] == B
  assert_close(out, case.reference[0], what=f"{case.name} pmap")


def check_mesh_jit(case):
  """jit of the batched loss with the batch sharded over 8 devices == the same, unsharded."""
  out = case.batched_value(case.sharded)
  if case.combine is not None:
    assert out.shape == ()
    assert out.sharding.is_fully_replicated, out.sharding
    assert out.is_fully_addressable
  assert_close(jax.device_get(out), case.batched_value(case.unsharded[1]),
               what=f"{case.name} mesh jit")


def check_recombined(case):
  """The batched (global) loss == weighted mean of per-example references by their diagnostics."""
  values, diags = case.reference
  batched = case.batched_value(case.unsharded[1])
  if case.combine is None:  # triangulate: the batched points are the per-example points
    assert_close(batched, values, what=f"{case.name} batched")
    return
  total = lambda x: np.sum(np.asarray(x, np.float64))
  diags = {k: np.asarray(d, np.float64) for k, d in diags.items()}
  expected = case.combine(values.astype(np.float64), diags, total)
  assert_close(batched, expected, what=f"{case.name} batched vs recombined")


def _shard_map(case):
  """jit(shard_map) over the case's batch: each device computes the loss of its one example."""
  spec = P("data")
  if case.combine is None:  # triangulate: gather the local points
    local, out_specs = case.value, spec
  else:
    def local(*shard):
      loss, diag = case.fn(*shard)
      total = lambda x: jax.lax.psum(x, "data")
      return jax.lax.pmean(loss, "data"), case.combine(loss, diag, total)
    out_specs = (P(), P())
  return jax.jit(jax.shard_map(local, mesh=case.mesh, in_specs=spec, out_specs=out_specs))


def check_shard_map(case):
  """Each device computes the loss of its local shard (one example).

  pmean of the local losses == plain mean of the per-example references (exact here since each
  shard holds one example; it equals the global loss only when every example weighs the same,
  which the inputs deliberately avoid). The psum-recombined weighted mean (weights = counts or
  weight sums from the local diagnostics) == the unsharded batched loss.
  """
  values, _ = case.reference
  out = _shard_map(case)(*case.inputs)
  if case.combine is None:
    assert_close(out, values, what=f"{case.name} shard_map")
    return
  mean, weighted = out
  assert_close(mean, np.mean(values.astype(np.float64)), what=f"{case.name} shard_map pmean")
  assert_close(weighted, case.batched_value(case.unsharded[1]),
               what=f"{case.name} shard_map weighted")


# --------------------------------------------------------------------------------------------------
# gradients


def check_grad(case):
  """jax.grad of the batched loss under the sharded jit == unsharded (rtol 1e-5)."""
  plain = case.unsharded[1][1]
  sharded = case.sharded[1]
  assert len(sharded) == len(case.argnums)
  for i, g, ref in zip(case.argnums, sharded, plain):
    assert g.sharding.is_equivalent_to(case.sharding, g.ndim), (i, g.sharding)
    ref = np.asarray(ref)
    assert np.all(np.isfinite(ref)) and np.any(ref != 0), i
    assert_close(jax.device_get(g), ref, rtol=GRAD_RTOL, atol=_grad_atol(ref),
                 what=f"{case.name} grad arg {i}")


# --------------------------------------------------------------------------------------------------
# the test: every check of one loss in one test


CHECKS = (check_reference, check_vmap, check_pmap, check_mesh_jit, check_recombined,
          check_shard_map, check_grad)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jax.pmap may be deprecated
def test_consistency(case):
  """Runs every check of one loss and reports all that fail.

  One test per loss rather than per (loss, transform): under pytest-xdist (CI runs -n 2) tests of
  one loss spread over workers would each rebuild and recompile the shared reference and batched
  functions; this way each is compiled once.
  """
  failures = []
  for check in CHECKS:
    if check is check_grad and case.argnums is None:
      continue
    try:
      check(case)
    except Exception as e:  # noqa: BLE001 (collect every failing check, then fail once)
      failures.append(f"{check.__name__}: {type(e).__name__}: {e}")
  assert not failures, f"{case.name}:\n" + "\n".join(failures)


# --------------------------------------------------------------------------------------------------
# shard_map with the default check_vma=True (tracing only)


@pytest.mark.parametrize("name", [*GRAD_CASES, "triangulate"])
def test_grad_traces_under_shard_map(name, cases):
  """jax.grad inside shard_map (default check_vma=True) traces: tracing only, no compile."""
  case = cases(name)
  argnums = GRAD_CASES.get(name, (0, 1))  # triangulate: proj, pixels
  local = jax.grad(lambda *a: jnp.sum(case.value(*a)), argnums=argnums)
  spec = P("data")
  grads = jax.eval_shape(jax.shard_map(local, mesh=case.mesh, in_specs=spec, out_specs=spec),
                         *case.inputs)
  assert [g.shape for g in grads] == [case.inputs[i].shape for i in argnums]


def test_grad_traces_under_shard_map_default_weights(cases):
  case = cases("triangulate")
  proj, pixels, weights = case.inputs
  pixels = np.where(weights[..., None] > 0, pixels, 0.0).astype(np.float32)
  local = jax.grad(lambda p, x: jnp.sum(triangulate(p, x)), argnums=(0, 1))
  spec = P("data")
  jax.eval_shape(jax.shard_map(local, mesh=case.mesh, in_specs=spec, out_specs=spec),
                 proj, pixels)


# --------------------------------------------------------------------------------------------------
# dtype


@pytest.mark.parametrize("form", ["angular", "triangulation", "l2_3d", "pixel"])
def test_registration_default_dtype_is_float32(form):
  """float32 in, float32 out with default hyper-parameters, also under jax_enable_x64 (a strongly
  typed np.float64 default, e.g. robust_scale=np.deg2rad(1.0), would promote to float64)."""
  r = registration_batch()
  args = [r[k][0] for k in ("tracks", "vis", "depth", "world_from_cam", "intrinsics")]
  loss, _ = jax.eval_shape(functools.partial(registration_loss, form=form), *args)
  assert loss.dtype == jnp.float32, loss.dtype
