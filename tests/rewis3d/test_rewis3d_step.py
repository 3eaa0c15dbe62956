"""The Rewis3d train step: no gradient crosses branches, EMA teachers, lambda ramp, remat, float32.

One device against 8 (data parallel and fsdp) is tests/train/test_sharding.py's Rewis3d test; its
one-device run also checks that a step moves both students and that the EMA teachers take the
first update whole (one compiled step serves both checks)."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxrecon.models.point_transformer import PointTransformer, PointTransformerConfig
from jaxrecon.models.segformer import SegFormer, SegFormerConfig
from jaxrecon.optim.ema import ema_teacher, rewis3d_decay
from jaxrecon.losses.segmentation import cmc_loss
from jaxrecon.rewis3d.step import (SegObjectiveConfig, _flat, _gather, create_seg_state,
                                   cross_modal_terms, seg_losses, seg_train_step)


K = 4
B, H, W, N = 8, 32, 32, 128


def _models(remat=False):
  rngs = nnx.Rngs(0)
  seg = SegFormer(SegFormerConfig.tiny(K, remat=remat), rngs=rngs)
  pts = PointTransformer(PointTransformerConfig.tiny(
      K, enc_dims=(8, 16), enc_depths=(1, 1), enc_heads=(1, 2), dec_dims=(8,), dec_depths=(1,),
      dec_heads=(1,), cpe_window=1, grid_size=0.2, remat=remat), rngs=rngs)
  return {"2d": seg, "3d": pts}


def _txs(names, optimizer=None):
  optimizer = optimizer or optax.adam(1e-2)
  return {n: optax.chain(optimizer, ema_teacher(rewis3d_decay(0.99))) for n in names}


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, K, (B, H, W))
  labels = np.where(rng.uniform(size=(B, H, W)) < 0.9, 255, labels)
  points_label = np.where(rng.uniform(size=(B, N)) < 0.8, 255, rng.integers(0, K, (B, N)))
  weak = rng.normal(size=(B, N, 3)).astype(np.float32)
  return {
      "image_weak": rng.integers(0, 255, (B, H, W, 3), dtype=np.uint8),
      "image_strong": rng.integers(0, 255, (B, H, W, 3), dtype=np.uint8),
      "labels": labels.astype(np.int32),
      "points_weak": weak, "points_strong": weak * 1.05,
      "points_rgb": rng.uniform(size=(B, N, 3)).astype(np.float32),
      "points_label": points_label.astype(np.int32),
      "points_confidence": rng.uniform(0.1, 2.0, (B, N)).astype(np.float32),
      "points_valid": rng.uniform(size=(B, N)) < 0.9,
      "points_pixel": np.where(rng.uniform(size=(B, N)) < 0.5,
                               rng.integers(0, H * W, (B, N)), -1).astype(np.int32),
  }


def test_lambda_ramp():
  config = SegObjectiveConfig(cmc_weight=0.1, base_steps=10, ramp_steps=20)
  got = [float(config.cmc_lambda(s)) for s in (0, 10, 20, 30, 100)]
  np.testing.assert_allclose(got, [0.0, 0.0, 0.05, 0.1, 0.1], atol=1e-7)


def test_bad_objective_configs():
  with pytest.raises(ValueError, match="confidence"):
    SegObjectiveConfig(confidence="both")
  with pytest.raises(ValueError, match="tau"):
    SegObjectiveConfig(tau=1.5)
  with pytest.raises(ValueError, match="cmc_normalise"):
    SegObjectiveConfig(cmc_normalise="count")
  with pytest.raises(ValueError, match="keys"):
    create_seg_state({"3d": _models()["3d"]}, _txs(["3d"]))


def _grad_fn(state, batch, graphdefs, config):
  """jit(params -> (gradient, metrics)) of the Rewis3d losses at `state`'s teachers."""
  return jax.jit(jax.grad(lambda p: seg_losses(p, state, batch, graphdefs=graphdefs,
                                               config=config), has_aux=True))


@pytest.mark.slow
def test_no_gradient_crosses_branches_and_remat_keeps_the_gradients(batch):
  """The 2D student's gradient does not depend on the 3D student's parameters (and vice versa),
  while the cross-modal terms are on: teachers are the only bridge.

  Both students recomputing their blocks in the backward pass (the paper configs' remat=True)
  while their mean teachers run inside the same jax.grad give the same gradients: nnx.remat
  failed there ("Cannot mutate Param from a different trace level"); models.stack.scan_layers
  must give the plain gradients."""
  config = SegObjectiveConfig(base_steps=0, ramp_steps=0)  # lambda = cmc_weight from step 0
  graphdefs, state = create_seg_state(_models(), _txs(["2d", "3d"]))
  params = {k: b.params for k, b in state.branches.items()}
  grad = _grad_fn(state, batch, graphdefs, config)
  g, metrics = grad(params)
  shaken = {"2d": jax.tree.map(lambda x: x + 0.3, params["2d"]),
            "3d": jax.tree.map(lambda x: x + 0.3, params["3d"])}
  g_other3d, _ = grad({"2d": params["2d"], "3d": shaken["3d"]})
  g_other2d, _ = grad({"2d": shaken["2d"], "3d": params["3d"]})
  for a, b in zip(jax.tree.leaves(g["2d"]), jax.tree.leaves(g_other3d["2d"])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(g["3d"]), jax.tree.leaves(g_other2d["3d"])):
    np.testing.assert_array_equal(a, b)
  # ... and the cross-modal terms do reach each student (through the other branch's teacher).
  assert float(metrics["lambda"]) == pytest.approx(0.1)
  assert float(metrics["cmc_2d"]) > 0 and float(metrics["cmc_3d"]) > 0
  assert int(metrics["links"]) == int(np.sum(batch["points_valid"] & (batch["points_pixel"] >= 0)))

  graphdefs, state = create_seg_state(_models(remat=True), _txs(["2d", "3d"]))
  g_remat, _ = _grad_fn(state, batch, graphdefs, config)(
      {k: b.params for k, b in state.branches.items()})
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_remat)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_confidence_modes_change_the_cross_modal_weighting(batch):
  """config.confidence picks the weights of both cross-modal terms: "dual" q * c, "prediction" q,
  "reconstruction" c, "none" 1; the four give four different losses on the same logits.
  config.cmc_normalise and config.cmc_balance reach cmc_loss for both terms.
  (seg_losses reaching these terms is test_no_gradient_crosses_branches...'s cmc metrics.)"""
  rng = np.random.default_rng(2)
  s2, t2 = (jnp.asarray(rng.normal(size=(B, H * W, K)), jnp.float32) for _ in range(2))
  s3, t3 = (jnp.asarray(rng.normal(size=(B, N, K)), jnp.float32) for _ in range(2))
  linked = batch["points_valid"] & (batch["points_pixel"] >= 0)
  conf = batch["points_confidence"]
  flags = {"dual": (True, True), "prediction": (True, False), "reconstruction": (False, True),
           "none": (False, False)}
  values = {}
  for mode, (q, c) in flags.items():
    cmc2, cmc3, _ = cross_modal_terms(s2, t2, s3, t3, batch,
                                      SegObjectiveConfig(confidence=mode))
    kw = dict(use_prediction_confidence=q, use_reconstruction_confidence=c)
    want2, _ = cmc_loss(_gather(s2, batch["points_pixel"]), t3, conf, linked, **kw)
    want3, _ = cmc_loss(s3, _gather(t2, batch["points_pixel"]), conf, linked, **kw)
    np.testing.assert_allclose([cmc2, cmc3], [want2, want3], rtol=1e-6)
    values[mode] = (float(cmc2), float(cmc3))
  for i in range(2):
    assert len({round(v[i], 6) for v in values.values()}) == 4, values
  # cmc_normalise and cmc_balance reach both terms as cmc_loss's normalise / balance_classes.
  for normalise in ("weights", "reconstruction"):
    for balance in (False, True):
      config = SegObjectiveConfig(cmc_normalise=normalise, cmc_balance=balance)
      got = cross_modal_terms(s2, t2, s3, t3, batch, config)[:2]
      kw = dict(normalise=normalise, balance_classes=balance)
      want = (cmc_loss(_gather(s2, batch["points_pixel"]), t3, conf, linked, **kw)[0],
              cmc_loss(s3, _gather(t2, batch["points_pixel"]), conf, linked, **kw)[0])
      np.testing.assert_allclose(got, want, rtol=1e-6)
      if normalise == "weights":  # unbalanced, this is the recipe's term: values["dual"]
        assert (abs(float(got[0]) - values["dual"][0]) > 1e-6) == balance


def test_ema_baseline_has_the_2d_branch_only(batch):
  """The step of the EMA baseline (a 2D branch alone) has no 3D or cross-modal terms. Traced
  only: the baseline's steps run (and are checked finite) in tests/rewis3d/test_rewis3d_task.py."""
  models = _models()
  graphdefs, state = create_seg_state({"2d": models["2d"]}, _txs(["2d"]))
  state, metrics = jax.eval_shape(lambda s, b: seg_train_step(
      s, b, graphdefs=tuple(graphdefs.items()), txs=tuple(_txs(["2d"]).items()),
      config=SegObjectiveConfig()), state, batch)
  assert set(state.branches) == {"2d"}
  assert {"st_2d", "ce_2d", "kl_2d", "loss"} <= set(metrics)
  assert not any(k.endswith("_3d") or k.startswith("cmc") for k in metrics), sorted(metrics)


def test_train_step_makes_no_float64(batch):
  """With float64 enabled, a float64 leak in the library would show in the
  step's outputs: every floating array of the new state and the metrics is float32."""
  graphdefs, state = create_seg_state(_models(), _txs(["2d", "3d"]))
  with jax.enable_x64(True):  # whether or not the suite enables it
    out = jax.eval_shape(lambda s, b: seg_train_step(
        s, b, graphdefs=tuple(graphdefs.items()), txs=tuple(_txs(["2d", "3d"]).items()),
        config=SegObjectiveConfig(base_steps=0, ramp_steps=1)), state, batch)
  floats = {jax.tree_util.keystr(p): x.dtype for p, x in jax.tree_util.tree_leaves_with_path(out)
            if jnp.issubdtype(x.dtype, jnp.floating)}
  assert floats and all(d == np.float32 for d in floats.values()), {
      k: d for k, d in floats.items() if d != np.float32}


def test_gathered_pixels_match_the_flat_image(batch):
  """The 2D logits the cross-modal term reads for a point are those of its pixel."""
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(B, H, W, K)), jnp.float32)
  got = np.asarray(_gather(_flat(logits), jnp.asarray(batch["points_pixel"])))
  for b in range(B):
    for j in np.flatnonzero(batch["points_pixel"][b] >= 0)[:20]:
      r, c = divmod(int(batch["points_pixel"][b, j]), W)
      np.testing.assert_array_equal(got[b, j], np.asarray(logits[b, r, c]))
