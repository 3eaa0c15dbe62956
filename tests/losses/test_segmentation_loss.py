"""Tests of jaxrecon.losses.segmentation against float64 numpy references written here."""
from collections import defaultdict
import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from jaxrecon.losses.segmentation import (cmc_loss, consistency_kl, masked_cross_entropy,
                                          student_teacher_loss)

pytestmark = pytest.mark.x64  # float64 numpy references at 1e-12 and check_grads

IGNORE = 255


# --------------------------------------------------------------------------------------------------
# numpy references: explicit loops over entries, one formula per line of the paper


def _np_softmax(row):
  e = np.exp(row - row.max())
  return e / e.sum()


def _entries(logits):
  """Iterates (index, logit row) over all leading axes and n."""
  flat = logits.reshape(-1, logits.shape[-1])
  return enumerate(flat)


def np_ce(logits, labels, ignore=IGNORE, weights=None):
  k = logits.shape[-1]
  labels = labels.reshape(-1)
  weights = np.ones(labels.shape) if weights is None else weights.reshape(-1)
  num = den = 0.0
  for j, row in _entries(logits):
    if labels[j] == ignore or not 0 <= labels[j] < k or weights[j] <= 0:
      continue
    num += weights[j] * -math.log(_np_softmax(row)[labels[j]])
    den += weights[j]
  return num / den if den > 0 else 0.0


def np_gated_kl(student, teacher, unlabelled, tau, valid=None):
  unlabelled = unlabelled.reshape(-1)
  valid = np.ones(unlabelled.shape, bool) if valid is None else valid.reshape(-1)
  t_rows = teacher.reshape(-1, teacher.shape[-1])
  kl_sum = kl_cnt = conf = nvalid = 0.0
  for j, s_row in _entries(student):
    p_t, p_s = _np_softmax(t_rows[j]), _np_softmax(s_row)
    if valid[j]:
      nvalid += 1
      conf += float(p_t.max() >= tau)
      if unlabelled[j]:
        kl_sum += float(np.sum(p_t * (np.log(p_t) - np.log(p_s))))
        kl_cnt += 1
  w_t = conf / nvalid if nvalid else 0.0
  kl = kl_sum / kl_cnt if kl_cnt else 0.0
  return w_t * kl, w_t, kl


def np_student_teacher(student, teacher, labels, tau, ignore=IGNORE):
  k = student.shape[-1]
  labelled = (labels != ignore) & (labels >= 0) & (labels < k)
  kl_loss, _, _ = np_gated_kl(student, teacher, ~labelled, tau)
  return 0.5 * np_ce(student, labels, ignore) + 0.5 * kl_loss


def np_cmc(student, teacher, conf, valid, use_q=True, use_c=True, normalise="weights",
           balance=False):
  t_rows = teacher.reshape(-1, teacher.shape[-1])
  conf, valid = conf.reshape(-1), valid.reshape(-1)
  num, den = defaultdict(float), defaultdict(float)  # per pseudo-class (one key if not balanced)
  for j, s_row in _entries(student):
    if not valid[j]:
      continue
    p_t = _np_softmax(t_rows[j])
    y = int(np.argmax(p_t))
    c = max(conf[j], 0.0) if use_c else 1.0
    w = (p_t.max() if use_q else 1.0) * c
    key = y if balance else 0
    num[key] += w * -math.log(_np_softmax(s_row)[y])
    den[key] += w if normalise == "weights" else c
  terms = [num[key] / den[key] for key in den if den[key] > 0]
  return sum(terms) / len(terms) if terms else 0.0


# --------------------------------------------------------------------------------------------------
# fixtures


def _data(seed=0, b=2, n=7, k=4, scale=3.0):
  rng = np.random.default_rng(seed)
  student = rng.normal(size=(b, n, k)) * scale
  teacher = rng.normal(size=(b, n, k)) * scale
  labels = rng.integers(0, k, size=(b, n))
  labels[rng.random((b, n)) < 0.4] = IGNORE
  conf = rng.uniform(0.1, 2.0, size=(b, n))
  valid = rng.random((b, n)) < 0.7
  return student, teacher, labels, conf, valid


def _finite_tree(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


# --------------------------------------------------------------------------------------------------
# masked_cross_entropy


def test_ce_matches_numpy_with_ignore_out_of_range_and_weights():
  s, _, labels, conf, _ = _data()
  labels[0, 0], labels[1, 1] = -3, 9  # out of range: ignored and counted
  loss, diag = masked_cross_entropy(s, labels)
  np.testing.assert_allclose(loss, np_ce(s, labels), rtol=1e-12)
  assert diag["num_out_of_range"] == 2
  assert diag["num_labelled"] == np.sum((labels != IGNORE) & (labels >= 0) & (labels < 4))
  conf[0, 2] = -1.0  # negative weights count as 0
  wloss, _ = masked_cross_entropy(s, labels, weights=conf)
  np.testing.assert_allclose(wloss, np_ce(s, labels, weights=conf), rtol=1e-12)


def test_ce_out_of_range_equals_ignored():
  s, _, labels, _, _ = _data(1)
  bad = labels.copy()
  bad[0, :3] = [4, 100, -1]
  ign = labels.copy()
  ign[0, :3] = IGNORE
  np.testing.assert_allclose(masked_cross_entropy(s, bad)[0], masked_cross_entropy(s, ign)[0])


def test_ce_custom_ignore_label():
  s, _, labels, _, _ = _data(2)
  labels = np.where(labels == IGNORE, -1, labels)
  loss, diag = masked_cross_entropy(s, labels, ignore_label=-1)
  np.testing.assert_allclose(loss, np_ce(s, labels, ignore=-1), rtol=1e-12)
  assert diag["num_out_of_range"] == 0


@pytest.mark.parametrize("case", ["all_ignored", "zero_weights", "empty_n"])
def test_ce_degenerate_is_zero_with_finite_grad(case):
  s, _, labels, _, _ = _data(3)
  weights = None
  if case == "all_ignored":
    labels = np.full_like(labels, IGNORE)
  elif case == "zero_weights":
    weights = np.zeros(labels.shape)
  else:
    s, labels = s[:, :0], labels[:, :0]
  f = lambda x: masked_cross_entropy(x, labels, weights=weights)[0]
  loss, g = jax.value_and_grad(f)(jnp.asarray(s))
  assert loss == 0.0 and _finite_tree(g) and not np.any(g)


def test_ce_grad_check():
  s, _, labels, conf, _ = _data(4)
  check_grads(jax.jit(lambda x: masked_cross_entropy(x, labels, weights=conf)[0]), (s,), order=2,
              modes=("fwd", "rev"))


def test_ce_invariant_to_per_entry_logit_shift():
  s, _, labels, _, _ = _data(5)
  shift = np.random.default_rng(0).normal(size=s.shape[:-1] + (1,)) * 10
  np.testing.assert_allclose(masked_cross_entropy(s + shift, labels)[0],
                             masked_cross_entropy(s, labels)[0], rtol=1e-10)


def test_ce_bfloat16_logits_give_float32_loss():
  s, _, labels, _, _ = _data(6)
  loss, _ = masked_cross_entropy(jnp.asarray(s, jnp.bfloat16), labels)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, np_ce(np.asarray(jnp.asarray(s, jnp.bfloat16), np.float64),
                                         labels), rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# consistency_kl and student_teacher_loss


@pytest.mark.parametrize("tau", [0.0, 0.6, 0.95, 1.0])
def test_consistency_kl_matches_numpy(tau):
  s, t, labels, _, valid = _data(7)
  unl = labels == IGNORE
  loss, diag = consistency_kl(s, t, unl, tau=tau)
  ref, w_t, kl = np_gated_kl(s, t, unl, tau)
  np.testing.assert_allclose(loss, ref, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(diag["w_t"], w_t, rtol=1e-12)
  np.testing.assert_allclose(diag["kl"], kl, rtol=1e-12)
  # Padding (valid=False) leaves both the KL mean and w_t.
  loss_v, diag_v = consistency_kl(s, t, unl, tau=tau, valid=valid)
  ref_v, w_t_v, _ = np_gated_kl(s, t, unl, tau, valid)
  np.testing.assert_allclose(loss_v, ref_v, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(diag_v["w_t"], w_t_v, rtol=1e-12)


def test_consistency_kl_zero_when_student_equals_teacher():
  s, _, labels, _, _ = _data(8)
  loss, diag = consistency_kl(s, s, labels == IGNORE, tau=0.0)
  assert diag["w_t"] == 1.0
  np.testing.assert_allclose(loss, 0.0, atol=1e-14)


def test_student_teacher_matches_numpy():
  s, t, labels, _, _ = _data(9)
  labels[1, 3] = 17  # out of range: no CE, but takes part in the KL as unlabelled
  loss, diag = student_teacher_loss(s, t, labels, tau=0.7)
  np.testing.assert_allclose(loss, np_student_teacher(s, t, labels, 0.7), rtol=1e-12)
  assert diag["num_unlabelled"] == np.sum(~((labels != IGNORE) & (labels < 4)))
  np.testing.assert_allclose(loss, 0.5 * diag["ce"] + 0.5 * diag["w_t"] * diag["kl"], rtol=1e-12)


def test_student_teacher_valid_excludes_padding():
  s, t, labels, _, valid = _data(10)
  # Padding entries carry junk (NaN logits, arbitrary labels); they must not matter.
  s_pad = np.where(valid[..., None], s, np.nan)
  t_pad = np.where(valid[..., None], t, np.inf)
  loss, _ = student_teacher_loss(s_pad, t_pad, labels, tau=0.5, valid=valid)
  ref = np_student_teacher(s[valid][None], t[valid][None], labels[valid][None], 0.5)
  np.testing.assert_allclose(loss, ref, rtol=1e-12)


@pytest.mark.parametrize("fn", ["kl", "st"])
def test_no_gradient_reaches_teacher(fn):
  s, t, labels, _, _ = _data(11)
  if fn == "kl":
    f = lambda s, t: consistency_kl(s, t, labels == IGNORE, tau=0.0)[0]
  else:
    f = lambda s, t: student_teacher_loss(s, t, labels, tau=0.0)[0]
  gs, gt = jax.grad(f, argnums=(0, 1))(s, t)
  assert np.any(gs) and np.all(np.asarray(gt) == 0.0)


@pytest.mark.parametrize("case", ["all_ignored", "all_labelled", "all_padding", "unconfident"])
def test_student_teacher_degenerate_finite(case):
  s, t, labels, _, _ = _data(12)
  valid, tau = None, 0.5
  if case == "all_ignored":
    labels = np.full_like(labels, IGNORE)
  elif case == "all_labelled":
    labels = np.zeros_like(labels)
  elif case == "all_padding":
    valid = np.zeros(labels.shape, bool)
  else:
    tau = 1.0  # w_t = 0 (no softmax reaches 1 here)
  f = lambda x: student_teacher_loss(x, t, labels, tau=tau, valid=valid)
  (loss, diag), g = jax.value_and_grad(f, has_aux=True)(jnp.asarray(s))
  assert _finite_tree((loss, diag, g))
  if case == "all_padding":
    assert loss == 0.0 and not np.any(g)
  if case == "unconfident":
    assert diag["w_t"] == 0.0 and diag["kl"] > 0


def test_student_teacher_grad_check():
  s, t, labels, _, _ = _data(13)
  check_grads(jax.jit(lambda x: student_teacher_loss(x, t, labels, tau=0.5)[0]), (s,), order=1,
              modes=("fwd", "rev"))


# --------------------------------------------------------------------------------------------------
# cmc_loss


@pytest.mark.parametrize("balance", [False, True])
@pytest.mark.parametrize("normalise", ["weights", "reconstruction"])
@pytest.mark.parametrize("use_q,use_c",
                         [(True, True), (True, False), (False, True), (False, False)])
def test_cmc_matches_numpy(use_q, use_c, normalise, balance):
  s, t, _, conf, valid = _data(14)
  conf[0, 0] = -0.5  # negative confidence counts as 0
  loss, diag = cmc_loss(s, t, conf, valid, use_prediction_confidence=use_q,
                        use_reconstruction_confidence=use_c, normalise=normalise,
                        balance_classes=balance)
  np.testing.assert_allclose(loss, np_cmc(s, t, conf, valid, use_q, use_c, normalise, balance),
                             rtol=1e-12)
  assert diag["num_valid"] == valid.sum()


def test_cmc_reconstruction_normaliser_keeps_the_teachers_doubt():
  """normalise="reconstruction": a teacher that is equally unsure everywhere (q = 1/2 with two
  classes tied) halves the term against a sure one, where "weights" does not change it; scaling c
  changes neither."""
  s, _, _, conf, valid = _data(21, k=2)
  sure = np.stack([np.full(s.shape[:-1], 50.0), np.zeros(s.shape[:-1])], -1)
  tied = np.stack([np.full(s.shape[:-1], 1e-6), np.zeros(s.shape[:-1])], -1)
  loss = lambda t, c, how: float(cmc_loss(s, t, c, valid, normalise=how)[0])
  np.testing.assert_allclose(loss(tied, conf, "reconstruction"),
                             0.5 * loss(sure, conf, "reconstruction"), rtol=1e-5)
  np.testing.assert_allclose(loss(tied, conf, "weights"), loss(sure, conf, "weights"), rtol=1e-5)
  np.testing.assert_allclose(loss(tied, conf * 37.0, "reconstruction"),
                             loss(tied, conf, "reconstruction"), rtol=1e-12)
  with pytest.raises(ValueError, match="normalise"):
    cmc_loss(s, sure, conf, valid, normalise="count")


@pytest.mark.parametrize("normalise", ["weights", "reconstruction"])
def test_cmc_balanced_counts_each_pseudo_class_once(normalise):
  """balance_classes: repeating every entry of one pseudo-class leaves the term unchanged (it
  moves the unbalanced one), and with one pseudo-class present the two agree."""
  s, t, _, conf, valid = _data(22, b=1, n=40)
  y = np.argmax(t, -1)
  many = y[0][valid[0]][0]
  rep = np.where(valid[0] & (y[0] == many))[0]
  grow = lambda x: np.concatenate([x, np.repeat(x[:, rep], 5, axis=1)], axis=1)
  loss = lambda *a, balance: float(cmc_loss(*a, normalise=normalise, balance_classes=balance)[0])
  base, grown = (s, t, conf, valid), tuple(grow(x) for x in (s, t, conf, valid))
  np.testing.assert_allclose(loss(*grown, balance=True), loss(*base, balance=True), rtol=1e-5)
  assert abs(loss(*grown, balance=False) - loss(*base, balance=False)) > 1e-3
  one = valid & (y == many)
  np.testing.assert_allclose(loss(s, t, conf, one, balance=True),
                             loss(s, t, conf, one, balance=False), rtol=1e-6)


def test_cmc_without_confidences_is_ce_on_teacher_argmax():
  s, t, _, conf, valid = _data(15)
  pseudo = np.where(valid, np.argmax(t, -1), IGNORE)
  loss, _ = cmc_loss(s, t, conf, valid, use_prediction_confidence=False,
                     use_reconstruction_confidence=False)
  np.testing.assert_allclose(loss, masked_cross_entropy(s, pseudo)[0], rtol=1e-12)


@pytest.mark.parametrize("scale", [1e-3, 0.37, 250.0])
def test_cmc_invariant_to_confidence_scale(scale):
  s, t, _, conf, valid = _data(16)
  np.testing.assert_allclose(cmc_loss(s, t, conf * scale, valid)[0], cmc_loss(s, t, conf, valid)[0],
                             rtol=1e-12)


def test_cmc_no_gradient_to_teacher_or_confidence():
  s, t, _, conf, valid = _data(17)
  gs, gt, gc = jax.grad(lambda s, t, c: cmc_loss(s, t, c, valid)[0], argnums=(0, 1, 2))(s, t, conf)
  assert np.any(gs)
  assert np.all(np.asarray(gt) == 0.0) and np.all(np.asarray(gc) == 0.0)


@pytest.mark.parametrize("balance", [False, True])
@pytest.mark.parametrize("normalise", ["weights", "reconstruction"])
@pytest.mark.parametrize("case", ["no_valid", "zero_conf"])
def test_cmc_degenerate_finite(case, normalise, balance):
  s, t, _, conf, valid = _data(18)
  if case == "no_valid":
    valid = np.zeros_like(valid)
    conf = np.full_like(conf, np.nan)  # junk where there is no correspondence
  else:
    conf = np.zeros_like(conf)
  (loss, diag), g = jax.value_and_grad(
      lambda x: cmc_loss(x, t, conf, valid, normalise=normalise, balance_classes=balance),
      has_aux=True)(s)
  assert loss == 0.0 and not np.any(g) and _finite_tree(g)
  assert np.isfinite(diag["weight_sum"])


@pytest.mark.parametrize("balance", [False, True])
@pytest.mark.parametrize("normalise", ["weights", "reconstruction"])
def test_cmc_junk_outside_valid_is_ignored(normalise, balance):
  s, t, _, conf, valid = _data(19)
  conf_j = np.where(valid, conf, np.nan)
  t_j = np.where(valid[..., None], t, np.nan)
  f = lambda t, c: jax.value_and_grad(lambda x: cmc_loss(
      x, t, c, valid, normalise=normalise, balance_classes=balance)[0])(s)
  (loss_j, g_j), (loss, g) = f(t_j, conf_j), f(t, conf)
  np.testing.assert_allclose(loss_j, loss, rtol=1e-12)
  np.testing.assert_allclose(g_j, g, rtol=1e-12)


@pytest.mark.parametrize("balance", [False, True])
def test_cmc_grad_check(balance):
  s, t, _, conf, valid = _data(20)
  check_grads(jax.jit(lambda x: cmc_loss(x, t, conf, valid, balance_classes=balance)[0]), (s,),
              order=1,
              modes=("fwd", "rev"))


# --------------------------------------------------------------------------------------------------
# transformations: jit, vmap, broadcasting, sharding


def _all_losses(s, t, labels, conf, valid):
  return jnp.stack([masked_cross_entropy(s, labels, weights=conf)[0],
                    consistency_kl(s, t, labels == IGNORE, tau=0.5)[0],
                    student_teacher_loss(s, t, labels, tau=0.5, valid=valid)[0],
                    cmc_loss(s, t, conf, valid)[0]])


def test_jit_vmap_pmap_agree():
  args = _data(21, b=8, n=5)
  # A vmapped sample is a batch of one; the per-slice calls are jitted only to save compile time.
  one = jax.jit(_all_losses)
  per_slice = np.stack([one(*(a[i:i + 1] for a in args)) for i in range(8)])
  np.testing.assert_allclose(jax.vmap(_all_losses)(*(a[:, None] for a in args)), per_slice,
                             rtol=1e-12)
  # pmap: each device pools its own slice (the caller recombines with the returned counts).
  np.testing.assert_allclose(jax.pmap(_all_losses)(*(a[:, None] for a in args)), per_slice,
                             rtol=1e-12)
  np.testing.assert_allclose(jax.jit(_all_losses)(*args), _all_losses(*args), rtol=1e-12)


def test_leading_axes_broadcast():
  s, t, labels, conf, valid = _data(22)
  # One confidence row shared by the batch equals that row tiled explicitly.
  np.testing.assert_allclose(cmc_loss(s, t, conf[0], valid)[0],
                             np_cmc(s, t, np.broadcast_to(conf[0], conf.shape), valid), rtol=1e-12)
  # Extra leading axes (b, v, n, k) pool like the flattened (b * v, n, k).
  s4 = np.stack([s, t], 1)
  lab4 = np.stack([labels, labels], 1)
  np.testing.assert_allclose(masked_cross_entropy(s4, lab4)[0],
                             np_ce(s4.reshape(4, 7, 4), lab4.reshape(4, 7)), rtol=1e-12)


def test_sharded_jit_matches_single_device():
  devices = np.array(jax.devices()[:8])
  mesh = Mesh(devices, ("data",))
  args = _data(21, b=8, n=5)
  sharded = [jax.device_put(a, NamedSharding(mesh, P("data"))) for a in args]
  single = _all_losses(*args)
  out = jax.jit(_all_losses)(*sharded)
  np.testing.assert_allclose(out, single, rtol=1e-12)
  # Gradients too (the collective in the global mean is inserted by the partitioner).
  g = jax.jit(jax.grad(lambda s: _all_losses(s, *sharded[1:]).sum()))(sharded[0])
  np.testing.assert_allclose(g, jax.grad(lambda s: _all_losses(s, *args[1:]).sum())(args[0]),
                             rtol=1e-10, atol=1e-15)


# --------------------------------------------------------------------------------------------------
# hypothesis: random shapes and label patterns


@st.composite
def _problems(draw):
  # Few distinct sizes (edge cases included) so that compiled programs get reused across examples.
  b = draw(st.integers(1, 2))
  n = draw(st.sampled_from([0, 1, 3, 8]))
  k = draw(st.sampled_from([1, 2, 5]))
  seed = draw(st.integers(0, 2**31 - 1))
  rng = np.random.default_rng(seed)
  scale = draw(st.sampled_from([0.1, 1.0, 8.0]))
  s = rng.normal(size=(b, n, k)) * scale
  t = rng.normal(size=(b, n, k)) * scale
  # Labels from -1 to k (both ends out of range) plus the ignore label.
  labels = rng.integers(-1, k + 1, size=(b, n))
  labels[rng.random((b, n)) < draw(st.sampled_from([0.0, 0.5, 1.0]))] = IGNORE
  conf = rng.uniform(0.0, 2.0, size=(b, n))
  valid = rng.random((b, n)) < draw(st.sampled_from([0.0, 0.6, 1.0]))
  tau = draw(st.sampled_from([0.0, 0.5, 0.95]))
  return s, t, labels, conf, valid, tau


@jax.jit
def _losses_and_grads(s, t, labels, conf, valid, tau):
  # One compiled program per drawn shape: eager op-by-op dispatch would compile every op anew.
  def total(x):
    a = student_teacher_loss(x, t, labels, tau=tau)[0]
    b = cmc_loss(x, t, conf, valid)[0]
    return a + b, (a, b)
  (_, (a, b)), g = jax.value_and_grad(total, has_aux=True)(s)
  return a, b, g


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(_problems())
def test_property_matches_numpy_and_finite(problem):
  s, t, labels, conf, valid, tau = problem
  st_loss, c_loss, grad = _losses_and_grads(s, t, labels, conf, valid, tau)
  np.testing.assert_allclose(st_loss, np_student_teacher(s, t, labels, tau), rtol=1e-10,
                             atol=1e-14)
  np.testing.assert_allclose(c_loss, np_cmc(s, t, conf, valid), rtol=1e-10, atol=1e-14)
  assert st_loss >= -1e-12 and c_loss >= 0.0
  assert _finite_tree(grad)


# --------------------------------------------------------------------------------------------------
# input validation


_S = np.zeros((2, 5, 3))
_L = np.zeros((2, 5), np.int32)
_M = np.ones((2, 5), bool)


@pytest.mark.parametrize("call,name", [
    (lambda: masked_cross_entropy(np.zeros((5,)), _L), "logits"),
    (lambda: masked_cross_entropy(_S, np.zeros((2, 4), np.int32)), "labels"),
    (lambda: masked_cross_entropy(_S, np.zeros((3, 5), np.int32)), "labels"),
    (lambda: masked_cross_entropy(_S, _L, weights=np.ones((2, 6))), "weights"),
    (lambda: masked_cross_entropy(_S, np.zeros((2, 5))), "labels"),  # float labels
    (lambda: masked_cross_entropy(np.zeros((2, 5, 0)), _L), "logits"),  # no classes
    (lambda: consistency_kl(_S, np.zeros((2, 5, 4)), _M), "teacher_logits"),
    (lambda: consistency_kl(_S, _S, np.ones((2, 5, 1))), "unlabelled_mask"),
    (lambda: consistency_kl(_S, _S, _M, tau=1.5), "tau"),
    (lambda: consistency_kl(_S, _S, _M, valid=np.ones(4)), "valid"),
    (lambda: student_teacher_loss(_S, _S[:, :4], _L), "teacher_logits"),
    (lambda: student_teacher_loss(_S, _S, _L[:, :3]), "labels"),
    (lambda: cmc_loss(_S, np.zeros((2, 5)), _M, _M), "other_teacher_logits"),
    (lambda: cmc_loss(_S, _S, np.ones((2, 4)), _M), "recon_confidence"),
    (lambda: cmc_loss(_S, _S, _M, np.ones((5, 2))), "valid"),
])
def test_bad_input_raises_naming_argument(call, name):
  with pytest.raises(ValueError, match=rf"^{name}:"):
    call()
