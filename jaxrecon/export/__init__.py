"""Export of a reconstruction (per-view depth, confidence, poses) to files other tools open.

Host-side numpy logic, used by `python -m jaxrecon.reconstruct` and usable on its own; the file
formats themselves (PLY, COLMAP text, poses.json, PNG) are written by `jaxrecon.io`:

* `points.fuse_points`: per-view depth maps + poses -> one coloured point cloud with confidence,
  dropping each view's least confident pixels (Rewis3d's percentile filter).
* `report`: registration report of a per-scene fit (report.json, report.md, one summary line).
* `views`: the input images + intrinsics, colour-mapped PNGs of depth / confidence, resized maps,
  the COLMAP-safe image names and copies.

Conventions are the package's (see `jaxrecon.geometry`): OpenCV camera axes, top-left pixel centre
at (0, 0), `cam_from_world` = world-to-camera, depth = camera-frame z in model units.
"""
from jaxrecon.export.points import fuse_points
from jaxrecon.export.views import colorize, read_images, read_intrinsics, resize_maps
