"""Benchmark: triangulation (jaxrecon vs OpenCV vs kornia) and the relative depth loss, one thread.

Usage (torch + kornia are optional; without them their rows are skipped):
    pip install torch kornia            # CPU build, only for this benchmark
    python experiments/bench_losses.py [--sizes 1000,10000,100000] [--repeats 7]

Prints a markdown table: median wall time of repeated runs (after compilation / warm-up), the ratio
to the reference in the same run, and the max reprojection error on noise-free data. Then checks the
degenerate cases (zero baseline, parallel rays, NaN in masked observations, points behind a camera)
for finite values and gradients, and the relative depth loss forward+backward throughput.
"""
from __future__ import annotations

import argparse
import os

# One thread everywhere, set before the libraries start their pools.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

# float64 rows (the accuracy comparison with kornia, which solves in float64) need x64; the
# float32 rows still compute in float32.
jax.config.update("jax_enable_x64", True)

from jaxrecon.geometry.triangulation import triangulate  # noqa: E402
from timing import median_seconds  # noqa: E402  (experiments/, the script's folder)

try:
  import kornia.geometry.epipolar as kepi
  import torch
  torch.set_num_threads(1)
except ImportError:  # the benchmark still runs the other rows
  torch = kepi = None

cv2.setNumThreads(1)


def make_problem(views: int, n: int, seed: int = 0):
  """Cameras on an arc 2 units from a unit cloud of points, looking at its centre (float64)."""
  rng = np.random.default_rng(seed)
  k = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
  x = rng.uniform(-0.5, 0.5, size=(n, 3))
  proj = []
  for i in range(views):
    ang = np.deg2rad(-20 + 40 * i / max(views - 1, 1))
    c = np.array([2.5 * np.sin(ang), 0.1 * rng.normal(), -2.5 * np.cos(ang)])
    z = -c / np.linalg.norm(c)
    xa = np.cross([0.0, 1.0, 0.0], z)
    xa /= np.linalg.norm(xa)
    r = np.stack([xa, np.cross(z, xa), z])
    proj.append(k @ np.concatenate([r, (-r @ c)[:, None]], 1))
  proj = np.stack(proj)
  hom = np.einsum("vij,nj->vni", proj, np.concatenate([x, np.ones((n, 1))], 1))
  return proj, hom[..., :2] / hom[..., 2:], x


def reproj_error(proj, pixels, points):
  hom = np.einsum("vij,nj->vni", proj, np.concatenate([points, np.ones((len(points), 1))], 1))
  return float(np.max(np.linalg.norm(hom[..., :2] / hom[..., 2:] - pixels, axis=-1)))


def timeit(fn, repeats):
  return median_seconds(fn, repeats, warmup=True)  # the warm-up call compiles


def jax_fns(proj, pixels, dtype=jnp.float32):
  p = jnp.asarray(proj, dtype)
  u = jnp.asarray(pixels, dtype)
  fwd = jax.jit(triangulate)
  grad = jax.jit(jax.grad(lambda p, u: jnp.sum(triangulate(p, u) ** 2), argnums=(0, 1)))
  return (lambda: fwd(p, u).block_until_ready(),
          lambda: jax.block_until_ready(grad(p, u)),
          lambda: np.asarray(fwd(p, u), np.float64))


def kornia_fns(proj, pixels, dtype):
  """kornia's default 2-view solver; for more views its DLT recipe (same rows, SVD) in float64."""
  p = torch.tensor(proj, dtype=dtype)
  u = torch.tensor(pixels, dtype=dtype)
  if len(proj) == 2:
    solve = lambda p, u: kepi.triangulate_points(p[0], p[1], u[0], u[1])
  else:
    def solve(p, u):
      rows = torch.cat([u[..., 0:1] * p[:, None, 2] - p[:, None, 0],
                        u[..., 1:2] * p[:, None, 2] - p[:, None, 1]], 0)  # (2v, n, 4)
      _, _, vh = torch.linalg.svd(rows.permute(1, 0, 2))
      h = vh[..., -1, :]
      return h[..., :3] / h[..., 3:]

  def fwd():
    with torch.no_grad():
      return solve(p, u)

  def fwd_bwd():
    pg, ug = p.clone().requires_grad_(True), u.clone().requires_grad_(True)
    (solve(pg, ug) ** 2).sum().backward()
  return fwd, fwd_bwd, lambda: fwd().double().numpy()


def bench_triangulation(sizes, repeats):
  print("\n## Triangulation, single thread (median of %d runs; ratio = jaxrecon / reference)\n" % repeats)
  print("| views | n | jaxrecon fwd ms | jaxrecon fwd+bwd ms | OpenCV fwd ms | fwd ratio vs OpenCV "
        "| kornia fwd ms | kornia fwd+bwd ms | fwd+bwd ratio vs kornia | max reproj px jaxrecon "
        "| max reproj px kornia | jaxrecon f64 fwd+bwd ms | f64 fwd+bwd ratio vs kornia "
        "| max reproj px jaxrecon f64 |")
  print("|---" * 14 + "|")
  for views in (2, 8):
    for n in sizes:
      proj, pixels, _ = make_problem(views, n)
      jf, jb, jout = jax_fns(proj, pixels)
      t_jf, t_jb = timeit(jf, repeats), timeit(jb, repeats)
      err_j = reproj_error(proj, pixels, jout())
      t_cv = ratio_cv = float("nan")
      if views == 2:
        p32, u32 = proj.astype(np.float32), pixels.astype(np.float32)
        t_cv = timeit(lambda: cv2.triangulatePoints(p32[0], p32[1], u32[0].T, u32[1].T), repeats)
        ratio_cv = t_jf / t_cv
      jf64, jb64, jout64 = jax_fns(proj, pixels, jnp.float64)
      t_jb64 = timeit(jb64, repeats)
      err_j64 = reproj_error(proj, pixels, jout64())
      t_kf = t_kb = ratio_k = err_k = float("nan")
      if torch is not None:
        kf, kb, kout = kornia_fns(proj, pixels, torch.float32 if views == 2 else torch.float64)
        t_kf, t_kb = timeit(kf, repeats), timeit(kb, repeats)
        ratio_k = t_jb / t_kb
        err_k = reproj_error(proj, pixels, kout())
      print(f"| {views} | {n} | {t_jf*1e3:.2f} | {t_jb*1e3:.2f} | {t_cv*1e3:.2f} | {ratio_cv:.2f} "
            f"| {t_kf*1e3:.2f} | {t_kb*1e3:.2f} | {ratio_k:.3f} | {err_j:.2e} | {err_k:.2e} "
            f"| {t_jb64*1e3:.2f} | {t_jb64 / t_kb:.3f} | {err_j64:.2e} |")


def degenerate_cases():
  """Finite value and gradient on the inputs where linear triangulation is ill-posed."""
  proj, pixels, _ = make_problem(2, 4)
  cases = {}
  same = np.stack([proj[0], proj[0]])
  cases["zero baseline"] = (same, np.stack([pixels[0], pixels[0]]), np.ones((2, 4)))
  shifted = proj.copy()
  shifted[1] = proj[0].copy()
  shifted[1][:, 3] += proj[0][:, :3] @ np.array([0.1, 0.0, 0.0])
  cases["parallel rays"] = (shifted, np.stack([pixels[0], pixels[0]]), np.ones((2, 4)))
  nan_px = pixels.copy()
  nan_px[1, 0] = np.nan
  w = np.ones((2, 4))
  w[1, 0] = 0.0
  cases["NaN in a masked observation"] = (proj, nan_px, w)
  behind = pixels.copy()
  behind[1] = 640 - pixels[1]  # rays that meet behind the cameras
  cases["point behind a camera"] = (proj, behind, np.ones((2, 4)))
  print("\n## Degenerate inputs (float32)\n\n| case | value finite | gradient finite |\n|---|---|---|")
  loss = lambda p, u, w: jnp.sum(triangulate(p, u, w) ** 2)
  for name, (p, u, w) in cases.items():
    args = [jnp.asarray(a, jnp.float32) for a in (p, u, w)]
    val = loss(*args)
    grads = jax.grad(loss, argnums=(0, 1))(*args)
    gfin = all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    print(f"| {name} | {bool(jnp.isfinite(val))} | {gfin} |")


def bench_depth_loss(repeats):
  from jaxrecon.losses.depth import relative_depth_loss  # noqa: PLC0415
  b, v, h, w = 8, 8, 256, 256
  key = jax.random.PRNGKey(0)
  k1, k2, k3 = jax.random.split(key, 3)
  pred = jnp.exp(jax.random.normal(k1, (b, v, h, w), jnp.float32))
  mono = jnp.exp(jax.random.normal(k2, (b, v, h, w), jnp.float32))
  conf = 2 * jax.nn.sigmoid(jax.random.normal(k3, (b, v, h, w), jnp.float32))
  mask = jnp.ones((b, v, h, w), jnp.float32)
  grad = jax.jit(jax.grad(lambda p, c: relative_depth_loss(p, mono, c, mask)[0], argnums=(0, 1)))
  t = timeit(lambda: jax.block_until_ready(grad(pred, conf)), repeats)
  print(f"\n## Relative depth loss, forward+backward, {b}x{v}x{h}x{w}, single thread\n\n"
        f"{t*1e3:.1f} ms per step, {b*v*h*w/t/1e6:.1f} Mpixel/s")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1000,10000,100000")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  print(f"jax {jax.__version__}, OpenCV {cv2.__version__}"
        + (f", torch {torch.__version__}" if torch is not None else ", torch/kornia not installed"))
  bench_triangulation([int(s) for s in args.sizes.split(",")], args.repeats)
  degenerate_cases()
  bench_depth_loss(args.repeats)


if __name__ == "__main__":
  main()
