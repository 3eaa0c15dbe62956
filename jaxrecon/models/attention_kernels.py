"""Memory-efficient self-attention kernels, one per backend, behind one function.

All kernels compute softmax(q k^T / sqrt(hd)) v on (B, n, heads, hd) arrays (the layout of
`jax.nn.dot_product_attention`), either over all keys or, with `key_lengths`, over the first
key_lengths[b] keys of each batch row (padding at the end of a sequence, as the point
transformer's serialised patches have it), and agree with the XLA reference up to rounding:

  "xla"      the reference: `jax.nn.dot_product_attention(implementation="xla")`. It materialises
             the (B, heads, n, n) logits and probabilities: quadratic memory in n (at the paper
             scale one global layer of 8 x 1373 tokens needs 7.7 GB per matrix in float32).
  "chunked"  queries in blocks of `chunk`: each block runs the reference against all keys (the
             softmax of a query row only needs that row's logits, so splitting queries is exact),
             inside `jax.lax.map` under `jax.checkpoint`, so that neither the forward nor the
             backward pass holds more than one block's (B, heads, chunk, n) probabilities. Memory
             is linear in n. Pure XLA: runs on every backend.
  "cudnn"    the fused cuDNN flash-attention kernel (GPU, bf16/fp16, head_dim a multiple of 8 and
             <= 128): never materialises the matrices.
  "pallas"   the Pallas TPU flash-attention kernel shipped with jax
             (`jax.experimental.pallas.ops.tpu.flash_attention`), on n padded to a multiple of its
             128-token blocks, the padded keys masked out with segment ids. UNTESTED ON HARDWARE:
             written from the kernel's signature and docs (we have no TPU); tests only cover the
             selection logic.
  "auto"     picks by `jax.default_backend()` (see `select_implementation`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "xla", "chunked", "cudnn", "pallas")
# Block size of the TPU kernel (its default BlockSizes are all 128): keys must fill whole blocks.
_TPU_BLOCK = 128


def cudnn_supported(dtype, head_dim: int) -> bool:
  """Whether cuDNN's fused attention accepts this (no bias, no mask) problem: fp16/bf16 inputs
  and a head_dim that is a multiple of 8 and at most 128 (the pre-Hopper limit; Hopper allows 256,
  but 128 is what every GPU takes)."""
  return jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)) and \
      head_dim % 8 == 0 and head_dim <= 128


def select_implementation(requested: str, dtype, head_dim: int, backend: str | None = None) -> str:
  """The kernel to run for `requested` (one of IMPLEMENTATIONS).

  "auto": GPU -> "cudnn" where `cudnn_supported`, else "chunked" (float32 on GPU: the fused
  kernel does not take it, and the plain XLA path would materialise the n x n matrices); TPU ->
  "pallas" if its kernel imports, else "chunked"; anything else (CPU) -> "chunked". An explicit
  choice is returned as is (a "cudnn" request on an unsupported problem fails inside jax).

  Args:
    requested: the config's choice. dtype: compute dtype of q, k, v. head_dim: per-head width.
    backend: `jax.default_backend()` when None (resolved at trace time).
  """
  if requested not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, "
                     f"got {requested!r}")
  if requested != "auto":
    return requested
  backend = jax.default_backend() if backend is None else backend
  if backend in ("gpu", "cuda"):
    return "cudnn" if cudnn_supported(dtype, head_dim) else "chunked"
  if backend == "tpu":
    return "pallas" if _tpu_flash_attention() is not None else "chunked"
  return "chunked"


def _key_mask(key_lengths, m):
  """(B, 1, 1, m) bool: key j of row b is attended where j < key_lengths[b] (None: no mask)."""
  if key_lengths is None:
    return None
  return (jnp.arange(m)[None, :] < key_lengths[:, None])[:, None, None, :]


def reference_attention(q, k, v, key_lengths=None):
  """The XLA reference: q, k, v (B, n, heads, hd) -> (B, n, heads, hd) in q's dtype (logits and
  softmax in float32 for bf16 inputs, as jax does). key_lengths: None or (B,) int, each >= 1."""
  return jax.nn.dot_product_attention(q, k, v, mask=_key_mask(key_lengths, k.shape[1]),
                                      implementation="xla")


def chunked_attention(q, k, v, *, chunk: int, key_lengths=None):
  """Query-chunked attention, equal to `reference_attention` row by row.

  Args:
    q: (B, n, heads, hd) queries; k, v: (B, m, heads, hd) keys and values.
    chunk: most queries per block (static). The n queries go in ceil(n / chunk) blocks of equal
      size s = ceil(n / blocks) <= chunk (balanced: 544 queries make 2 blocks of 272, not 512 +
      32 padded to 1024), the last padded with zero queries whose outputs are dropped (keys are
      never padded, so the padded rows need no mask and get zero cotangents).
    key_lengths: None, or (B,) int >= 1: row b attends to its first key_lengths[b] keys only.
  Returns:
    (B, n, heads, hd). Temporaries: one block's (B, heads, s, m) logits and probabilities in the
    forward pass and, thanks to the checkpoint, in the backward pass too (it saves only the
    block's queries and recomputes the rest).
  """
  b, n, h, hd = q.shape
  if n <= chunk:
    return reference_attention(q, k, v, key_lengths)
  blocks = math.ceil(n / chunk)
  size = math.ceil(n / blocks)
  q = jnp.pad(q, ((0, 0), (0, blocks * size - n), (0, 0), (0, 0)))
  q = jnp.moveaxis(q.reshape(b, blocks, size, h, hd), 1, 0)             # (blocks, B, size, h, hd)
  # prevent_cse=False: the loop already keeps XLA from merging the recomputation with the forward.
  block = jax.checkpoint(lambda qb: reference_attention(qb, k, v, key_lengths), prevent_cse=False)
  out = jax.lax.map(block, q)                                           # (blocks, B, size, h, hd)
  return jnp.moveaxis(out, 0, 1).reshape(b, blocks * size, h, hd)[:, :n]


def _tpu_flash_attention():
  """The Pallas TPU flash-attention module, or None where it does not import."""
  try:
    from jax.experimental.pallas.ops.tpu import flash_attention  # pylint: disable=g-import-not-at-top
  except Exception:  # noqa: BLE001  (any import failure means: not available here)
    return None
  return flash_attention


def pallas_tpu_attention(q, k, v, key_lengths=None):
  """Flash attention with the Pallas TPU kernel. UNTESTED ON HARDWARE (no TPU available).

  The kernel takes (B, heads, n, hd), needs the key length to be a multiple of its key block and
  at least one query block long; n is padded to a multiple of 128 and the padded tokens get
  segment id 1 (real tokens 0), so real queries never attend to padded keys. With key_lengths,
  the tokens from key_lengths[b] on are padding too (queries there attend among themselves: their
  outputs are the caller's padding). The scale is passed explicitly (the kernel's default is 1,
  not 1/sqrt(hd)).

  Args: q, k, v (B, n, heads, hd), the same n; key_lengths None or (B,) int.
  Returns (B, n, heads, hd) in q's dtype.
  """
  fa = _tpu_flash_attention()
  if fa is None:
    raise RuntimeError("attention='pallas' needs jax.experimental.pallas.ops.tpu.flash_attention")
  b, n, _, hd = q.shape
  padded = math.ceil(n / _TPU_BLOCK) * _TPU_BLOCK
  to_bhnd = lambda x: jnp.pad(jnp.swapaxes(x, 1, 2), ((0, 0), (0, 0), (0, padded - n), (0, 0)))
  lengths = jnp.full((b,), n) if key_lengths is None else jnp.minimum(key_lengths, n)
  segment = (jnp.arange(padded)[None, :] >= lengths[:, None]).astype(jnp.int32)
  out = fa.flash_attention(to_bhnd(q), to_bhnd(k), to_bhnd(v), segment_ids=fa.SegmentIds(segment,
                                                                                          segment),
                           sm_scale=1.0 / math.sqrt(hd))
  return jnp.swapaxes(out[:, :, :n], 1, 2)


def dot_product_attention(q, k, v, *, implementation: str = "auto", chunk: int = 512,
                          key_lengths=None):
  """Self-attention with the selected kernel.

  Args:
    q, k, v: (B, n, heads, hd) in the compute dtype (all the same dtype).
    implementation: one of IMPLEMENTATIONS ("auto" resolves by backend, dtype and head_dim).
    chunk: query block of the "chunked" kernel.
    key_lengths: None (every key), or (B,) int >= 1: row b attends to its first key_lengths[b]
      keys (the rest is padding).
  Returns:
    (B, n, heads, hd) in q's dtype.
  """
  kind = select_implementation(implementation, q.dtype, q.shape[-1])
  if kind == "xla":
    return reference_attention(q, k, v, key_lengths)
  if kind == "chunked":
    return chunked_attention(q, k, v, chunk=chunk, key_lengths=key_lengths)
  if kind == "cudnn":
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=key_lengths,
                                        implementation="cudnn")
  return pallas_tpu_attention(q, k, v, key_lengths)
