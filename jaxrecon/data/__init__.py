"""Data: scenes, readers, the embedded procedural world, caching, point clouds, sparse labels.

  scene          `Scene`, the value readers return and everything else consumes
  formats        readers (Middlebury, NeRF, TUM/ICL, COLMAP text, CamVid, generic folder) + writer
  transforms     resize / crop of scenes and arrays, intrinsics and pixels kept consistent
  synthetic      seeded procedural scenes rendered by a JAX ray caster (depth, poses, classes)
  cache          atomic one-.npz-per-scene cache with provenance
  pointcloud     lifting depth to a labelled point cloud, view-aware sampling, 2D-3D links
  sparse_labels  points / scribbles / coarse labels from dense maps
  batching       the grain chain every training pipeline shares (sharded, seeded, resumable)

The methods' records and pipelines live in their folders (`jaxrecon.reliev3r`, `jaxrecon.rewis3d`);
this package knows no method. Submodules are imported explicitly
(`from jaxrecon.data.cache import cache_scenes`): the package itself stays light, so grain worker
processes do not pay for JAX-heavy modules they do not use. Pseudo-label producers live one layer
down, in `jaxrecon.experts`; file formats in `jaxrecon.io`.
"""
from jaxrecon.data.scene import IGNORE_LABEL, Scene

__all__ = ["IGNORE_LABEL", "Scene"]
