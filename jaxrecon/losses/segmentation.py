"""Segmentation losses of Rewis3d: sparse-label cross-entropy, mean-teacher consistency, cross-modal
consistency.

Every function takes logits of shape (..., n, k): n entries (pixels of an image flattened, or 3D
points) with k classes, behind any leading batch axes (usually (b,)), so one function serves the 2D
and the 3D branch. Per-entry arrays (labels, masks, confidences) have shape (..., n); leading axes
broadcast against those of the logits. Each function returns (scalar loss, dict of scalar
diagnostics).

Means are taken over all selected entries of the whole input at once (every leading axis and n
pooled), not per image then averaged, so an image with many labels weighs more than one with few;
this matches a cross-entropy with `ignore_index` and "mean" reduction. Counts and weight sums are
returned in the diagnostics so that a caller splitting a batch by hand (pmap) can recombine exact
global means; under a sharded jit the pooling is already global.

Logits are upcast to at least float32 (so bfloat16 logits still give an accurate log-softmax); the
loss has that dtype. Teacher logits, confidences and weights never receive a gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrecon.geometry.safe import masked_mean, safe_div
from jaxrecon.geometry.shapes import check_shape


# --------------------------------------------------------------------------------------------------
# helpers


def _check_logits(logits, name, dims=None):
  dims = check_shape(logits, "... n k", name, dims)
  if dims["k"] < 1:
    raise ValueError(
        f"{name}: expected shape (..., n, k) with k >= 1 classes, got {jnp.shape(logits)}")
  return dims


def _check_integer(x, name):
  if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
    raise ValueError(f"{name}: expected an integer dtype, got {jnp.result_type(x)}")


def _check_prob(x, name):
  # Only static numbers can be checked; a traced tau (from a schedule) is trusted.
  if isinstance(x, (int, float)) and not 0.0 <= x <= 1.0:
    raise ValueError(f"{name}: expected a value in [0, 1], got {x}")


def _entry_shape(dims):
  return tuple(dims["..."]) + (dims["n"],)


def _logits(x, shape):
  """Broadcasts logits to `shape` + (k,) in at least float32."""
  x = jnp.asarray(x)
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  return jnp.broadcast_to(x, shape + x.shape[-1:])


def _bool_mask(m, shape):
  """Non-zero -> True, broadcast to `shape` (so counts are over the full batch, not the mask's)."""
  m = jnp.asarray(m)
  return jnp.broadcast_to(m if m.dtype == jnp.bool_ else m != 0, shape)


def _nonneg_weights(w, shape, dtype):
  """Weights as stop-gradient, non-negative `dtype` values broadcast to `shape`.

  Negative weights count as 0 (as in `masked_mean`, whose mask test is `> 0`), and the stop-gradient
  keeps the loss from lowering itself by shrinking the weights of hard entries.
  """
  w = jax.lax.stop_gradient(jnp.asarray(w).astype(dtype))
  return jnp.broadcast_to(jnp.maximum(w, 0.0), shape)


def _labelled(labels, k, ignore_label):
  """(labelled, out_of_range) masks: a label is usable iff 0 <= label < k and label != ignore."""
  not_ignored = labels != ignore_label
  in_range = (labels >= 0) & (labels < k)
  return not_ignored & in_range, not_ignored & ~in_range


def _nll(logits, labels):
  """-log softmax(logits)[label] per entry; labels must be in [0, k) (callers mask the rest).

  A one-hot select instead of a gather: k is small, and it keeps the backward pass a dense
  elementwise op that shards along any axis.
  """
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.bool_)
  picked = jnp.sum(jnp.where(onehot, logits, 0.0), axis=-1)
  return jax.nn.logsumexp(logits, axis=-1) - picked


def _teacher(teacher_logits):
  """(log-probabilities, arg-max class, max probability) of stop-gradient teacher logits."""
  logp = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits), axis=-1)
  return logp, jnp.argmax(logp, axis=-1), jnp.exp(jnp.max(logp, axis=-1))


def _count(mask, dtype):
  return jnp.sum(mask, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# losses


def masked_cross_entropy(logits, labels, *, ignore_label: int = 255, weights=None):
  """Mean cross-entropy over labelled entries.

  Args:
    logits: (..., n, k) class scores (unnormalised log-probabilities).
    labels: (..., n) integer class ids. An entry is labelled iff 0 <= label < k and
      label != ignore_label. Every other value (ignore_label, negatives, >= k) is ignored: it cannot
      be rejected under jit, so it is masked out and counted in `num_out_of_range` instead of being
      allowed to index outside the classes.
    ignore_label: the label of unlabelled entries (255 as in common segmentation datasets).
    weights: optional (..., n) per-entry weights >= 0 (negative counts as 0; no gradient). The loss
      is sum_j w_j CE_j / sum_j w_j over labelled entries.

  Returns:
    loss: scalar, dimensionless (nats); 0 with zero gradient when no labelled entry has weight > 0.
    diagnostics: "ce" (= loss), "accuracy" (unweighted, over labelled entries), "num_labelled"
      (labelled entries with weight > 0), "num_out_of_range", "weight_sum".
  """
  dims = _check_logits(logits, "logits")
  check_shape(labels, "... n", "labels", dims)
  _check_integer(labels, "labels")
  if weights is not None:
    check_shape(weights, "... n", "weights", dims)
  shape = _entry_shape(dims)
  logits = _logits(logits, shape)
  labels = jnp.broadcast_to(jnp.asarray(labels), shape)
  labelled, out_of_range = _labelled(labels, dims["k"], ignore_label)
  w = labelled.astype(logits.dtype)
  if weights is not None:
    w = w * _nonneg_weights(weights, shape, logits.dtype)
  # Unlabelled entries get label 0 so the one-hot is well defined; their weight is 0.
  nll = _nll(logits, jnp.where(labelled, labels, 0))
  loss = masked_mean(nll, w)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype)
  return loss, {
      "ce": loss,
      "accuracy": masked_mean(correct, labelled),
      "num_labelled": _count(w > 0, logits.dtype),
      "num_out_of_range": _count(out_of_range, logits.dtype),
      "weight_sum": jnp.sum(w),
  }


def _student_teacher_inputs(student_logits, teacher_logits, entries, entries_name, valid, tau):
  """Checks the shared arguments of the teacher-student losses; returns (dims, entry shape,
  student and teacher logits in one float dtype, the valid mask (all True when None))."""
  dims = _check_logits(student_logits, "student_logits")
  _check_logits(teacher_logits, "teacher_logits", dims)
  check_shape(entries, "... n", entries_name, dims)
  if valid is not None:
    check_shape(valid, "... n", "valid", dims)
  _check_prob(tau, "tau")
  shape = _entry_shape(dims)
  student = _logits(student_logits, shape)
  teacher = _logits(teacher_logits, shape).astype(student.dtype)
  valid = jnp.ones(shape, jnp.bool_) if valid is None else _bool_mask(valid, shape)
  return dims, shape, student, teacher, valid


def consistency_kl(student_logits, teacher_logits, unlabelled_mask, *, tau=0.95, valid=None):
  """Confidence-gated mean-teacher consistency w_t * mean_j KL(teacher_j || student_j).

  The teacher is a target: it is wrapped in stop_gradient. The KL is averaged over entries where
  `unlabelled_mask` (and `valid`) hold. w_t is one scalar for the whole input: the fraction of valid
  entries (labelled or not) whose teacher max-probability is >= tau, so a teacher that is unsure
  about most of the batch has its pseudo-targets turned down as a whole.

  Args:
    student_logits: (..., n, k).
    teacher_logits: (..., n, k), no gradient flows into them.
    unlabelled_mask: (..., n) bool (non-zero = true), entries the KL is averaged over.
    tau: confidence threshold in [0, 1] (0.95 in Rewis3d); may be a traced scalar.
    valid: optional (..., n) bool, entries that exist (False for padding, e.g. padded 3D points);
      default all. Invalid entries count neither in the KL nor in w_t.

  Returns:
    loss: scalar (nats); 0 with zero gradient when the mask is empty.
    diagnostics: "kl" (ungated mean KL), "w_t", "num_unlabelled", "teacher_max_prob" (mean over
      valid entries).
  """
  dims, shape, student, teacher, valid = _student_teacher_inputs(
      student_logits, teacher_logits, unlabelled_mask, "unlabelled_mask", valid, tau)
  unlabelled = _bool_mask(unlabelled_mask, shape) & valid
  return _gated_kl(student, teacher, unlabelled, valid, tau)


def _gated_kl(student, teacher, unlabelled, valid, tau):
  logp_t, _, max_prob = _teacher(teacher)
  p_t = jnp.exp(logp_t)
  logp_s = jax.nn.log_softmax(student, axis=-1)
  # p log p -> 0 as p -> 0; the where keeps a teacher logit of -inf from giving 0 * inf = NaN.
  kl = jnp.sum(jnp.where(p_t > 0, p_t * (logp_t - logp_s), 0.0), axis=-1)
  kl_mean = masked_mean(kl, unlabelled)
  confident = (max_prob >= tau).astype(student.dtype)
  w_t = jax.lax.stop_gradient(masked_mean(confident, valid))
  return w_t * kl_mean, {
      "kl": kl_mean,
      "w_t": w_t,
      "num_unlabelled": _count(unlabelled, student.dtype),
      "teacher_max_prob": masked_mean(max_prob, valid),
  }


def student_teacher_loss(student_logits, teacher_logits, labels, *, ignore_label: int = 255,
                         tau=0.95, valid=None):
  """Rewis3d per-branch loss L_ST = 0.5 CE(student, sparse labels) + 0.5 w_t KL(teacher || student).

  The CE runs over labelled entries, the gated KL (see `consistency_kl`) over the rest: an entry is
  labelled iff 0 <= label < k and label != ignore_label, every other valid entry is unlabelled.

  Args:
    student_logits: (..., n, k).
    teacher_logits: (..., n, k), no gradient flows into them.
    labels: (..., n) integer sparse labels, `ignore_label` where unlabelled.
    ignore_label: label of unlabelled entries.
    tau: teacher confidence threshold in [0, 1].
    valid: optional (..., n) bool, False for padding entries (excluded from all terms).

  Returns:
    loss: scalar (nats).
    diagnostics: those of `masked_cross_entropy` and `consistency_kl`.
  """
  _check_integer(labels, "labels")
  dims, shape, student, teacher, valid = _student_teacher_inputs(
      student_logits, teacher_logits, labels, "labels", valid, tau)
  labels = jnp.broadcast_to(jnp.asarray(labels), shape)
  ce, ce_diag = masked_cross_entropy(student, labels, ignore_label=ignore_label, weights=valid)
  labelled, _ = _labelled(labels, dims["k"], ignore_label)
  kl, kl_diag = _gated_kl(student, teacher, valid & ~labelled, valid, tau)
  return 0.5 * ce + 0.5 * kl, {**ce_diag, **kl_diag}


CMC_NORMALISE = ("weights", "reconstruction")


def cmc_loss(student_logits, other_teacher_logits, recon_confidence, valid, *,
             use_prediction_confidence: bool = True, use_reconstruction_confidence: bool = True,
             normalise: str = "weights", balance_classes: bool = False):
  """Rewis3d cross-modal consistency L_C = sum_j q_j c_j CE(student_j, y_j) / Z.

  y_j = argmax of the other modality's teacher at entry j, q_j its max-probability, c_j the
  reconstruction confidence of the 3D point that links the two modalities; only entries with a
  2D-3D correspondence (`valid`) count. Neither q nor c receives a gradient (they are weights:
  with a gradient the loss could shrink them instead of fitting the target). Setting a flag to
  False replaces q or c by 1 (the paper's ablations: reconstruction confidence only, prediction
  confidence only, or neither = plain CE over valid entries).

  The normaliser Z (`normalise`):
    "weights": Z = sum_j q_j c_j, a weighted mean: the weights only rank the entries, and the
      term keeps its full strength however unsure the teacher is.
    "reconstruction": Z = sum_j c_j. The paper writes the loss as the weighted sum
      -sum_j w_j log S(y_j) (Rewis3d, CVPR 2026, eq. of L_C), i.e. a teacher's low max-probability
      q lowers the term itself; c has no common unit across reconstructions (MapAnything's, the
      plane sweep's in [0, 1], the simulated one's), so it is normalised to mean 1 over the
      entries, and q, a probability, keeps its absolute value. Without c this is mean_j q_j CE_j;
      without q, the same as "weights".

  balance_classes: the normalised sum is taken per pseudo-class y (num_y / Z_y over the entries
  whose pseudo-label is y, with Z_y that class's share of Z) and the classes present are averaged
  with equal weight, over all batch dimensions together. The other branch inherits the class
  prior of sparse labels (coarse labels: mostly ground; points: mostly objects), and an
  unbalanced term hands that prior on through the many entries of its dominant class; balanced,
  a pseudo-class counts once however many entries carry it (a class-balanced loss in the sense
  of re-weighting by inverse class frequency, here of the pseudo-labels).

  Args:
    student_logits: (..., n, k).
    other_teacher_logits: (..., n, k), teacher of the other modality, gathered onto the student's
      entries through the correspondences.
    recon_confidence: (..., n) confidence >= 0 (negative counts as 0); any unit, since the loss is
      invariant to scaling all c by a positive constant.
    valid: (..., n) bool, True where the correspondence exists.
    use_prediction_confidence: weight by q (else q = 1).
    use_reconstruction_confidence: weight by c (else c = 1).
    normalise: "weights" or "reconstruction" (above).
    balance_classes: average the per-pseudo-class terms (above).

  Returns:
    loss: scalar (nats); 0 with zero gradient when Z is 0 (no valid entry).
    diagnostics: "cmc" (= loss), "ce_unweighted" (mean over valid entries), "weight_sum",
      "num_valid", "pred_conf" and "recon_conf" (means of q and c over valid entries), "agreement"
      (fraction of valid entries where the student's argmax equals the pseudo-label).
  """
  if normalise not in CMC_NORMALISE:
    raise ValueError(f"normalise: expected one of {CMC_NORMALISE}, got {normalise!r}")
  dims = _check_logits(student_logits, "student_logits")
  _check_logits(other_teacher_logits, "other_teacher_logits", dims)
  check_shape(recon_confidence, "... n", "recon_confidence", dims)
  check_shape(valid, "... n", "valid", dims)
  shape = _entry_shape(dims)
  student = _logits(student_logits, shape)
  dtype = student.dtype
  _, pseudo, q = _teacher(_logits(other_teacher_logits, shape).astype(dtype))
  recon = _nonneg_weights(recon_confidence, shape, dtype)
  valid = _bool_mask(valid, shape)
  # where, not multiply: a NaN confidence or teacher on an entry without correspondence is dropped.
  c = jnp.where(valid, recon if use_reconstruction_confidence else 1.0, 0.0)
  w = jnp.where(valid, c * q, 0.0) if use_prediction_confidence else c
  nll = _nll(student, pseudo)
  z = w if normalise == "weights" else c
  num = jnp.where(w > 0, nll, 0.0) * w
  if balance_classes:
    # (k,) sums per pseudo-class over every entry of every batch element.
    hot = jax.nn.one_hot(pseudo, student.shape[-1], dtype=dtype).reshape(-1, student.shape[-1])
    num_y, z_y = num.reshape(-1) @ hot, z.reshape(-1) @ hot
    present = z_y > 0
    per_class = jnp.where(present, num_y / jnp.where(present, z_y, 1.0), 0.0)
    loss = safe_div(jnp.sum(per_class), jnp.sum(present.astype(dtype)))
  else:
    loss = safe_div(jnp.sum(num), jnp.sum(z))
  agree = (jnp.argmax(student, axis=-1) == pseudo).astype(dtype)
  return loss, {
      "cmc": loss,
      "ce_unweighted": masked_mean(nll, valid),
      "weight_sum": jnp.sum(w),
      "num_valid": _count(valid, dtype),
      "pred_conf": masked_mean(q, valid),
      "recon_conf": masked_mean(recon, valid),
      "agreement": masked_mean(agree, valid),
  }
