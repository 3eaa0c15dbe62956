"""Attention kernels: the query-chunked kernel equals the XLA reference (values and gradients),
its compiled temporaries grow linearly in the token count (the reference's quadratically), and
the per-backend selection."""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon.models import attention_kernels as ak

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from compile_bound import FULL  # noqa: E402


def _qkv(n, b=2, h=2, hd=8, seed=0, dtype=jnp.float32):
  # Scaled so that the softmax is far from uniform (a uniform softmax would hide row mix-ups).
  # Drawn by numpy: the same inputs whatever XLA's code generation (jax.random's normal rounds
  # differently at -O0, and the kernels' agreement is checked at float32 rounding).
  rng = np.random.default_rng(seed)
  return [jnp.asarray(3.0 * rng.standard_normal((b, n, h, hd)), dtype) for _ in range(3)]


def _numpy_attention(q, k, v):
  """Float64 numpy reference: softmax(q k^T / sqrt(hd)) v per batch and head."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum("bhqk,bkhd->bqhd", p, v)


def test_chunked_equals_reference_values_and_gradients():
  """37 tokens in blocks of 8: four full blocks and a padded remainder. Both kernels compiled
as users get them (compile_bound.FULL): the comparison is at float32 rounding."""
  q, k, v = _qkv(37)
  kernels = {"chunked": lambda q, k, v: ak.chunked_attention(q, k, v, chunk=8),
             "reference": ak.reference_attention}
  value = {n: jax.jit(f, compiler_options=FULL)(q, k, v) for n, f in kernels.items()}
  out = value["chunked"]
  np.testing.assert_allclose(out, _numpy_attention(q, k, v), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out, value["reference"], rtol=1e-5, atol=1e-6)
  cot = jnp.asarray(np.random.default_rng(9).standard_normal(out.shape), jnp.float32)
  grad = {n: jax.jit(lambda q, k, v, f=f: jax.vjp(f, q, k, v)[1](cot), compiler_options=FULL)(
      q, k, v) for n, f in kernels.items()}
  for name, gc, gr in zip("qkv", grad["chunked"], grad["reference"]):
    scale = float(jnp.abs(gr).max())
    assert scale > 1e-3, name   # the gradient is not trivially zero
    np.testing.assert_allclose(gc, gr, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def test_chunked_bfloat16_matches_reference():
  """Each block runs the reference on its queries: bf16 results agree to bf16 rounding."""
  q, k, v = _qkv(37, dtype=jnp.bfloat16)
  out = ak.chunked_attention(q, k, v, chunk=16)
  ref = ak.reference_attention(q, k, v)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32),
                             rtol=2e-2, atol=2e-2)


def _temp_bytes(fn, n, hd=16):
  """Compiled temporaries of fwd + bwd of sum(fn(q, k, v) * w) at n tokens (compile only)."""
  shape = jax.ShapeDtypeStruct((1, n, 2, hd), jnp.float32)

  def loss(q, k, v, w):
    return jnp.sum(fn(q, k, v) * w)
  lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(shape, shape, shape, shape)
  return lowered.compile().memory_analysis().temp_size_in_bytes


def test_chunked_temporaries_grow_linearly_reference_quadratically():
  """Doubling the tokens: the reference's n x n matrices quadruple its temporaries; the chunked
  kernel (with its checkpoint) only doubles them. Compile-only. (Measured on XLA:CPU: reference
  10.1 -> 40.3 MiB, chunked 1.26 -> 2.51 MiB.)"""
  chunked = lambda q, k, v: ak.chunked_attention(q, k, v, chunk=64)
  c1, c2 = _temp_bytes(chunked, 512), _temp_bytes(chunked, 1024)
  r1, r2 = _temp_bytes(ak.reference_attention, 512), _temp_bytes(ak.reference_attention, 1024)
  print(f"\ntemp bytes 512 -> 1024 tokens: chunked {c1} -> {c2} ({c2 / c1:.2f}x), "
        f"reference {r1} -> {r2} ({r2 / r1:.2f}x)")
  assert r2 / r1 > 3.5
  assert c2 / c1 < 2.5
  assert c2 < r2 / 8


def test_selection_by_backend_dtype_and_head_dim():
  sel = ak.select_implementation
  assert sel("auto", jnp.float32, 64, backend="cpu") == "chunked"
  assert sel("auto", jnp.bfloat16, 64, backend="cpu") == "chunked"
  assert sel("auto", jnp.bfloat16, 64, backend="gpu") == "cudnn"
  assert sel("auto", jnp.float16, 128, backend="gpu") == "cudnn"
  assert sel("auto", jnp.float32, 64, backend="gpu") == "chunked"     # cuDNN takes no float32
  assert sel("auto", jnp.bfloat16, 12, backend="gpu") == "chunked"    # head_dim not a multiple of 8
  assert sel("auto", jnp.bfloat16, 256, backend="gpu") == "chunked"
  tpu = "pallas" if ak._tpu_flash_attention() is not None else "chunked"
  assert sel("auto", jnp.bfloat16, 64, backend="tpu") == tpu
  for explicit in ("xla", "chunked", "cudnn", "pallas"):
    assert sel(explicit, jnp.float32, 64, backend="cpu") == explicit
  with pytest.raises(ValueError, match="attention implementation"):
    sel("flash", jnp.float32, 64)


def test_dispatch_on_cpu_runs_the_chunked_kernel():
  q, k, v = _qkv(21)
  auto = ak.dot_product_attention(q, k, v, implementation="auto", chunk=4)
  xla = ak.dot_product_attention(q, k, v, implementation="xla")
  np.testing.assert_allclose(auto, xla, rtol=1e-5, atol=1e-6)
  jaxpr = str(jax.make_jaxpr(lambda q, k, v: ak.dot_product_attention(q, k, v, chunk=4))(q, k, v))
  assert "scan" in jaxpr   # the chunked kernel's loop, not the one-shot reference


def test_key_lengths_attend_to_a_prefix_of_the_keys_in_every_kernel():
  """key_lengths (3, 37, 1 of 37 keys): the float64 attention over each row's first keys, for the
  reference and the chunked kernel (values and gradients); keys past the length do not matter."""
  q, k, v = (x[:1].repeat(3, 0) for x in _qkv(37))
  lengths = jnp.asarray([3, 37, 1])
  want = np.stack([_numpy_attention(q[i:i + 1], k[i:i + 1, :n], v[i:i + 1, :n])[0]
                   for i, n in enumerate([3, 37, 1])])
  chunked = jax.jit(lambda q, k, v: ak.chunked_attention(q, k, v, chunk=8, key_lengths=lengths))
  reference = jax.jit(lambda q, k, v: ak.reference_attention(q, k, v, lengths))
  np.testing.assert_allclose(chunked(q, k, v), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(reference(q, k, v), want, rtol=1e-5, atol=1e-5)
  junk = k.at[0, 3:].set(100.0), v.at[0, 3:].set(-100.0)
  np.testing.assert_allclose(chunked(q, *junk)[0], want[0], rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(jax.random.key(3), q.shape, jnp.float32)
  for gc, gr in zip(jax.vjp(chunked, q, k, v)[1](cot), jax.vjp(reference, q, k, v)[1](cot)):
    np.testing.assert_allclose(gc, gr, rtol=1e-5, atol=1e-5 * float(jnp.abs(gr).max()))
  out = ak.dot_product_attention(q, k, v, implementation="auto", chunk=8, key_lengths=lengths)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
