"""Data: scenes, the embedded procedural world, pseudo-label caching, sparse labels, pipelines.

  scene        `Scene`, the value readers return and everything else consumes
  formats      readers (Middlebury, NeRF, TUM/ICL, COLMAP text, CamVid, generic folder) + writer
  transforms   resize / crop of scenes and arrays, intrinsics and pixels kept consistent
  synthetic    seeded procedural scenes rendered by a JAX ray caster (depth, poses, classes)
  records      scene + expert outputs -> training record; the jobs `jaxrecon.prepare` caches
  cache        atomic one-.npz-per-scene cache with provenance
  sparse_labels  points / scribbles / coarse labels from dense maps (Rewis3d)
  pipeline     deterministic, resumable grain pipelines of fixed-shape multi-view samples

Submodules are imported explicitly (`from jaxrecon.data.pipeline import make_dataset`): the
package itself stays light, so grain worker processes do not pay for JAX-heavy modules they do
not use. Pseudo-label producers live one layer down, in `jaxrecon.experts`.
"""
from jaxrecon.data.scene import IGNORE_LABEL, Scene

__all__ = ["IGNORE_LABEL", "Scene"]
