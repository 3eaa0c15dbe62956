"""Hyper-parameters of the Reliev3R network (a frozen, hashable dataclass with presets).

The config only describes the architecture and its numerics; it is hashable so it can be a static
argument of jitted functions and a key of compile caches.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxrecon.models.attention_kernels import IMPLEMENTATIONS

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of `Reliev3R`.

  Backbone layout: `depth` blocks, each made of one frame-attention layer (tokens of one view attend
  to each other) followed by one global-attention layer (all tokens of all views), so the network has
  2 * depth transformer layers in the order frame, global, frame, global, ...

  Attributes:
    patch_size: side of the square patches, in pixels; image sides must be multiples of it.
    embed_dim: token width d.
    depth: number of (frame, global) blocks; 2 * depth transformer layers.
    num_heads: attention heads; head_dim = embed_dim / num_heads must be divisible by 4 (2D RoPE
      gives half of each head to rows and half to columns, in (cos, sin) pairs).
    mlp_ratio: hidden width of the transformer MLPs, in units of embed_dim.
    num_registers: learnable register tokens per view (the same for every view).
    image_size: nominal (h, w) in pixels, used by presets, demos and tests. The network itself is
      size-agnostic: any (h, w) that are multiples of patch_size work (RoPE is built from the shape).
    rope_base: frequency base of the 2D RoPE (positions are in patch units).
    layer_scale_init: initial value of the per-channel residual scales (LayerScale); 0 disables.
    dense_hidden: hidden width of the per-patch MLP of the depth/confidence head.
    dense_channels: channels per full-resolution pixel after the pixel shuffle.
    camera_hidden: hidden width of the camera head MLP.
    log_depth_bound: depth = exp(B tanh(raw / B)) with B = log_depth_bound: a soft bound that keeps
      depth in (e^-B, e^B) with non-vanishing gradients.
    dtype: compute dtype of the backbone's attention / MLP and of the dense head, "float32" or
      "bfloat16". Parameters are always float32, and so are the residual stream, the norms and
      LayerScale, the camera head, the final activations and all outputs.
    remat: recompute each (frame, global) block in the backward pass (less activation memory):
      the backward pass then keeps one block's activations at a time instead of all of them.
    attention: attention kernel, one of "auto", "xla", "chunked", "cudnn", "pallas"
      (`models.attention_kernels`); "auto" picks by backend: cuDNN on GPU for bf16, the Pallas
      flash kernel on TPU, the query-chunked kernel elsewhere. Changes memory and speed only.
    attention_chunk: most queries per block of the "chunked" kernel (its temporaries are
      heads x block x tokens logits per block; blocks are balanced, each <= attention_chunk).
  """
  patch_size: int = 8
  embed_dim: int = 128
  depth: int = 4
  num_heads: int = 4
  mlp_ratio: float = 4.0
  num_registers: int = 4
  image_size: tuple[int, int] = (64, 64)
  rope_base: float = 100.0
  layer_scale_init: float = 0.01
  dense_hidden: int = 128
  dense_channels: int = 16
  camera_hidden: int = 128
  log_depth_bound: float = 10.0
  dtype: str = "float32"
  remat: bool = False
  attention: str = "auto"
  attention_chunk: int = 512

  def __post_init__(self):
    if self.dtype not in _DTYPES:
      raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
    if self.attention not in IMPLEMENTATIONS:
      raise ValueError(f"attention must be one of {IMPLEMENTATIONS}, got {self.attention!r}")
    if self.attention_chunk < 1:
      raise ValueError(f"attention_chunk must be >= 1, got {self.attention_chunk}")
    if self.embed_dim % self.num_heads:
      raise ValueError(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
    if self.head_dim % 4:
      raise ValueError(f"head_dim {self.head_dim} must be divisible by 4 for 2D RoPE")
    h, w = self.image_size
    if h % self.patch_size or w % self.patch_size:
      raise ValueError(f"image_size {self.image_size} not a multiple of patch_size {self.patch_size}")
    # A list would make the config unhashable; normalise to a tuple.
    object.__setattr__(self, "image_size", (int(h), int(w)))

  @property
  def head_dim(self) -> int:
    return self.embed_dim // self.num_heads

  @property
  def num_layers(self) -> int:
    """Transformer layers in the backbone (frame and global together)."""
    return 2 * self.depth

  @property
  def compute_dtype(self):
    return _DTYPES[self.dtype]

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  @classmethod
  def tiny(cls, **changes) -> "ModelConfig":
    """CPU demo size: 64x64 input, patch 8 (8x8 tokens per view), d=128, 4 blocks (8 layers);
    about 1.8M parameters."""
    return cls(**changes)

  @classmethod
  def paper(cls, **changes) -> "ModelConfig":
    """Paper scale: ViT-L width (d=1024, 16 heads of 64, MLP 4x), patch 14, 518x518 input (8 views
    per scene in training). 18 blocks = 36 alternating frame/global layers, about 458M parameters
    with the heads: 24 ViT-L layers alone are only ~302M, so reaching the paper's ~450M takes 36."""
    base = dict(patch_size=14, embed_dim=1024, depth=18, num_heads=16, mlp_ratio=4.0,
                num_registers=4, image_size=(518, 518), dense_hidden=512, dense_channels=16,
                camera_hidden=512, dtype="bfloat16", remat=True)
    base.update(changes)
    return cls(**base)
