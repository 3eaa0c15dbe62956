"""SegFormer (Xie et al., 2021) semantic segmentation network in Flax NNX.

A Mix Transformer (MiT) encoder of four stages (overlapping strided-conv patch embeddings, efficient
self-attention with spatial reduction of keys/values, Mix-FFN with a 3x3 depthwise convolution) and
the all-MLP decoder (per-stage linear projection, upsampling to 1/4 resolution, concatenation, 1x1
fusion, per-pixel classifier). Logits are bilinearly upsampled to the input resolution.

    from jaxrecon.models.segformer import SegFormer, SegFormerConfig
    model = SegFormer(SegFormerConfig.b(0, num_classes=19), rngs=nnx.Rngs(0))
    logits = model(images)   # (b, h, w, 3) in [0, 255] -> (b, h, w, k) float32

Feature maps are kept as (b, h, w, c) throughout (NHWC, the layout of `nnx.Conv`); attention
flattens them to tokens internally. Parameters are float32; `config.dtype` is the compute dtype.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrecon.models.backbone import normalize_images
from jaxrecon.models.stack import scan_layers, stacked
from jaxrecon.models.initializers import conv, linear, truncated_normal

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Published MiT encoder sizes (Xie et al., 2021, Table 6 / official configs): stage widths, blocks
# per stage and the all-MLP decoder width. Heads (1, 2, 5, 8) and SR ratios (8, 4, 2, 1) are shared.
_MIT_VARIANTS = {
    0: dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), decoder_dim=256),
    1: dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2), decoder_dim=256),
    2: dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), decoder_dim=768),
    3: dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3), decoder_dim=768),
    4: dict(embed_dims=(64, 128, 320, 512), depths=(3, 8, 27, 3), decoder_dim=768),
    5: dict(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), decoder_dim=768),
}

# MiT uses eps 1e-6 in its transformer blocks and stage norms.
_LN_EPS = 1e-6
# Linear layers start as in MiT (truncated normal, std 0.02): small residual branches at init.
_LINEAR_INIT = truncated_normal(0.02)


@dataclasses.dataclass(frozen=True)
class SegFormerConfig:
  """Architecture of `SegFormer` (frozen and hashable: usable as a static jit argument).

  Attributes:
    num_classes: k, number of output classes (logit channels).
    embed_dims: channel width of each of the 4 encoder stages.
    depths: transformer blocks in each stage.
    num_heads: attention heads in each stage; embed_dims[i] must be divisible by num_heads[i].
    sr_ratios: spatial-reduction ratio R of each stage: keys/values are computed on an R x R strided
      convolution of the stage's feature map, cutting attention cost by R^2.
    patch_sizes: kernel side of each stage's overlapping patch embedding convolution.
    strides: stride of each patch embedding; the product over stages (32 by default) is the
      encoder's total downsampling, and input h, w must be multiples of it.
    mlp_ratio: hidden width of the Mix-FFN, in units of the stage width.
    decoder_dim: channel width of the all-MLP decoder.
    drop_path: stochastic depth rate. Only 0 is supported (kept for config compatibility with the
      published recipes, which use 0.1); any other value raises.
    dtype: compute dtype, "float32" or "bfloat16". Parameters and the output logits are float32.
    remat: recompute each transformer block in the backward pass (less activation memory).
  """
  num_classes: int = 19
  embed_dims: tuple[int, ...] = (32, 64, 160, 256)
  depths: tuple[int, ...] = (2, 2, 2, 2)
  num_heads: tuple[int, ...] = (1, 2, 5, 8)
  sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
  patch_sizes: tuple[int, ...] = (7, 3, 3, 3)
  strides: tuple[int, ...] = (4, 2, 2, 2)
  mlp_ratio: float = 4.0
  decoder_dim: int = 256
  drop_path: float = 0.0
  dtype: str = "float32"
  remat: bool = False

  def __post_init__(self):
    # Lists would make the config unhashable; normalise every per-stage field to a tuple of ints.
    for name in ("embed_dims", "depths", "num_heads", "sr_ratios", "patch_sizes", "strides"):
      value = tuple(int(v) for v in getattr(self, name))
      if len(value) != 4:
        raise ValueError(f"{name} must have 4 entries (one per stage), got {value}")
      if any(v < 1 for v in value):
        raise ValueError(f"{name} entries must be >= 1, got {value}")
      object.__setattr__(self, name, value)
    if self.num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
    if self.dtype not in _DTYPES:
      raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
    for i, (d, nh) in enumerate(zip(self.embed_dims, self.num_heads)):
      if d % nh:
        raise ValueError(f"embed_dims[{i}]={d} not divisible by num_heads[{i}]={nh}")
    for i, (p, s) in enumerate(zip(self.patch_sizes, self.strides)):
      if p % 2 == 0 or p < s:
        raise ValueError(f"patch_sizes[{i}]={p} must be odd and >= strides[{i}]={s} (symmetric "
                         "padding p // 2 then gives exactly h / stride outputs)")
    if self.drop_path != 0.0:
      raise ValueError(f"drop_path={self.drop_path} is not implemented; use 0.0")

  @property
  def compute_dtype(self):
    return _DTYPES[self.dtype]

  @property
  def size_multiple(self) -> int:
    """Input h and w must be multiples of this (pixels): every stage's map must divide exactly by
    its stride and its SR ratio. 32 for the published layouts."""
    multiple, total = 1, 1
    for s, r in zip(self.strides, self.sr_ratios):
      total *= s
      multiple = math.lcm(multiple, total * r)
    return multiple

  def replace(self, **changes) -> "SegFormerConfig":
    return dataclasses.replace(self, **changes)

  @classmethod
  def b(cls, i: int, num_classes: int, **changes) -> "SegFormerConfig":
    """Published SegFormer-B`i` (MiT-b`i` encoder + all-MLP decoder), i in 0..5. Sizes with 19
    classes (Cityscapes): b0 about 3.7M parameters, b1 13.7M, b2 27.4M, b3 47.2M, b4 64.0M, b5
    84.6M."""
    if i not in _MIT_VARIANTS:
      raise ValueError(f"i must be one of {sorted(_MIT_VARIANTS)} (MiT-b0..b5), got {i!r}")
    base = dict(_MIT_VARIANTS[i], num_classes=num_classes)
    base.update(changes)
    return cls(**base)

  @classmethod
  def tiny(cls, num_classes: int = 2, **changes) -> "SegFormerConfig":
    """CPU test size: widths (16, 32, 64, 96), one block per stage, decoder 64 (about 0.35M
    parameters); fast at 64x64."""
    base = dict(num_classes=num_classes, embed_dims=(16, 32, 64, 96), depths=(1, 1, 1, 1),
                num_heads=(1, 2, 4, 4), decoder_dim=64)
    base.update(changes)
    return cls(**base)


class OverlapPatchEmbed(nnx.Module):
  """Strided convolution with kernel > stride (neighbouring patches overlap, preserving local
  continuity) followed by LayerNorm."""

  def __init__(self, in_dim, dim, *, patch_size, stride, dtype=jnp.float32, rngs: nnx.Rngs):
    pad = patch_size // 2
    self.proj = conv(in_dim, dim, (patch_size, patch_size), (stride, stride),
                     padding=((pad, pad), (pad, pad)), dtype=dtype,
                     rngs=rngs)
    self.norm = nnx.LayerNorm(dim, epsilon=_LN_EPS, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    """x: (b, h, w, c_in) -> (b, h / stride, w / stride, dim)."""
    return self.norm(self.proj(x))


class EfficientAttention(nnx.Module):
  """Multi-head self-attention whose keys/values come from a spatially reduced map: an R x R
  stride-R convolution + LayerNorm shrinks the n = h * w tokens to n / R^2 (R = 1: plain MHSA)."""

  def __init__(self, dim, num_heads, *, sr_ratio, dtype=jnp.float32, rngs: nnx.Rngs):
    self.num_heads = num_heads
    self.head_dim = dim // num_heads
    self.q = linear(dim, dim, kernel_init=_LINEAR_INIT, dtype=dtype, rngs=rngs)
    self.kv = linear(dim, 2 * dim, kernel_init=_LINEAR_INIT, dtype=dtype, rngs=rngs)
    self.proj = linear(dim, dim, kernel_init=_LINEAR_INIT, dtype=dtype, rngs=rngs)
    if sr_ratio > 1:
      self.sr = conv(dim, dim, (sr_ratio, sr_ratio), (sr_ratio, sr_ratio), padding="VALID",
                     dtype=dtype, rngs=rngs)
      self.sr_norm = nnx.LayerNorm(dim, epsilon=_LN_EPS, dtype=dtype, rngs=rngs)
    else:
      self.sr = self.sr_norm = None

  def __call__(self, x):
    """x: (b, h, w, d) -> (b, h, w, d); h, w must be multiples of sr_ratio."""
    b, h, w, d = x.shape
    q = self.q(x).reshape(b, h * w, self.num_heads, self.head_dim)
    reduced = self.sr_norm(self.sr(x)) if self.sr is not None else x
    m = reduced.shape[1] * reduced.shape[2]
    kv = self.kv(reduced).reshape(b, m, 2, self.num_heads, self.head_dim)
    k, v = kv[:, :, 0], kv[:, :, 1]                      # (b, m, heads, head_dim)
    # Fused kernel where available (cuDNN), XLA reference elsewhere; softmax scale 1/sqrt(head_dim).
    out = jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype))
    return self.proj(out.reshape(b, h, w, d))


class MixFFN(nnx.Module):
  """Linear -> 3x3 depthwise conv -> GELU -> Linear. The depthwise conv leaks positional
  information from zero padding, which replaces positional embeddings (so any input size works)."""

  def __init__(self, dim, hidden, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.fc1 = linear(dim, hidden, kernel_init=_LINEAR_INIT, dtype=dtype, rngs=rngs)
    self.dwconv = conv(hidden, hidden, (3, 3), padding=((1, 1), (1, 1)),
                       feature_group_count=hidden, dtype=dtype, rngs=rngs)
    self.fc2 = linear(hidden, dim, kernel_init=_LINEAR_INIT, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    """x: (b, h, w, dim) -> (b, h, w, dim)."""
    return self.fc2(jax.nn.gelu(self.dwconv(self.fc1(x))))


class MiTBlock(nnx.Module):
  """Pre-norm transformer block: x + attn(norm1(x)); x + ffn(norm2(x))."""

  def __init__(self, dim, num_heads, *, sr_ratio, mlp_ratio, dtype=jnp.float32, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, epsilon=_LN_EPS, dtype=dtype, rngs=rngs)
    self.attn = EfficientAttention(dim, num_heads, sr_ratio=sr_ratio, dtype=dtype, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, epsilon=_LN_EPS, dtype=dtype, rngs=rngs)
    self.ffn = MixFFN(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)

  def __call__(self, x):
    """x: (b, h, w, dim) -> (b, h, w, dim) in x's dtype."""
    x = x + self.attn(self.norm1(x)).astype(x.dtype)
    return x + self.ffn(self.norm2(x)).astype(x.dtype)


class MiTStage(nnx.Module):
  """Overlapping patch embedding, `depth` MiT blocks, LayerNorm.

  The blocks' parameters are stacked along a leading (depth,) axis and the blocks run as one scan
  (`models.stack`): the program holds one block per stage whatever the depth.
  """

  def __init__(self, in_dim, dim, *, depth, num_heads, sr_ratio, patch_size, stride, mlp_ratio,
               remat=False, dtype=jnp.float32, rngs: nnx.Rngs):
    self.remat = remat
    self.embed = OverlapPatchEmbed(in_dim, dim, patch_size=patch_size, stride=stride, dtype=dtype,
                                   rngs=rngs)
    self.blocks = stacked(lambda r: MiTBlock(dim, num_heads, sr_ratio=sr_ratio,
                                             mlp_ratio=mlp_ratio, dtype=dtype, rngs=r),
                          depth, rngs.params())
    self.norm = nnx.LayerNorm(dim, epsilon=_LN_EPS, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    """x: (b, h, w, in_dim) -> (b, h / stride, w / stride, dim)."""
    x = self.embed(x)
    x = scan_layers(self.blocks, x, lambda block, x, _: block(x), remat=self.remat)
    return self.norm(x)


class AllMLPDecoder(nnx.Module):
  """Per-stage Linear(c_i, D), bilinear upsampling to the 1/4 map, concat (4 D), 1x1 fuse to D
  (no bias) + LayerNorm + ReLU, then a 1x1 classifier to k logits (no dropout).

  The fuse normalisation is a per-pixel LayerNorm instead of the original BatchNorm: BatchNorm's
  running statistics are mutable state that would have to be threaded through sharded train steps
  (and synchronised across devices) and kept consistent in an EMA teacher; LayerNorm has only
  parameters and behaves identically in training and inference.
  """

  def __init__(self, in_dims, dim, num_classes, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.proj = nnx.List([linear(c, dim, kernel_init=_LINEAR_INIT, dtype=dtype, rngs=rngs)
                          for c in in_dims])
    self.fuse = linear(len(in_dims) * dim, dim, use_bias=False, dtype=dtype, rngs=rngs)
    self.fuse_norm = nnx.LayerNorm(dim, epsilon=1e-5, dtype=dtype, rngs=rngs)
    self.classifier = linear(dim, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, features):
    """features: 4 maps (b, h_i, w_i, c_i), the first at 1/4 resolution -> (b, h/4, w/4, k) logits
    in the compute dtype."""
    b, h, w, _ = features[0].shape
    ups = []
    for proj, f in zip(self.proj, features):
      y = proj(f)
      if y.shape[1:3] != (h, w):
        # Half-pixel bilinear (align_corners=False), as the reference implementation.
        y = jax.image.resize(y, (b, h, w, y.shape[-1]), method="bilinear")
      ups.append(y)
    # Deepest stage first, as in the reference decoder (only the fuse weight layout depends on it).
    fused = jax.nn.relu(self.fuse_norm(self.fuse(jnp.concatenate(ups[::-1], axis=-1))))
    return self.classifier(fused)


class SegFormer(nnx.Module):
  """SegFormer: MiT encoder + all-MLP decoder, logits at the input resolution."""

  def __init__(self, config: SegFormerConfig, *, rngs: nnx.Rngs):
    self.config = config
    dtype = config.compute_dtype
    stages, in_dim = [], 3
    for i in range(4):
      stages.append(MiTStage(in_dim, config.embed_dims[i], depth=config.depths[i],
                             num_heads=config.num_heads[i], sr_ratio=config.sr_ratios[i],
                             patch_size=config.patch_sizes[i], stride=config.strides[i],
                             mlp_ratio=config.mlp_ratio, remat=config.remat, dtype=dtype,
                             rngs=rngs))
      in_dim = config.embed_dims[i]
    self.stages = nnx.List(stages)
    self.decoder = AllMLPDecoder(config.embed_dims, config.decoder_dim, config.num_classes,
                                 dtype=dtype, rngs=rngs)

  def __call__(self, images):
    """images: (b, h, w, 3) uint8 or float, RGB in [0, 255]; h, w multiples of
    `config.size_multiple` (32). Returns (b, h, w, k) float32 logits."""
    cfg = self.config
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images: expected shape (b, h, w, 3), got {images.shape}")
    b, h, w, _ = images.shape
    m = cfg.size_multiple
    if h % m or w % m:
      raise ValueError(f"images: h, w must be multiples of {m}, got shape {images.shape}")
    x = normalize_images(images.astype(jnp.float32) / 255.0, cfg.compute_dtype)
    features = []
    for stage in self.stages:
      x = stage(x)
      features.append(x)
    logits = self.decoder(features).astype(jnp.float32)
    return jax.image.resize(logits, (b, h, w, cfg.num_classes), method="bilinear")


def abstract_segformer(config: SegFormerConfig, seed: int = 0) -> SegFormer:
  """The model with abstract (shape/dtype only) parameters via nnx.eval_shape: no memory is
  allocated, so published sizes can be inspected or counted cheaply."""
  return nnx.eval_shape(lambda: SegFormer(config, rngs=nnx.Rngs(seed)))
