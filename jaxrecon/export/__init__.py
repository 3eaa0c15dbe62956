"""Export of a reconstruction (per-view depth, confidence, poses) to files other tools open.

Pure host-side numpy logic, used by `python -m jaxrecon.reconstruct` and usable on its own:

* `points.fuse_points`: per-view depth maps + poses -> one coloured point cloud with confidence,
  dropping each view's least confident pixels (Rewis3d's percentile filter).
* `ply.write_ply` / `ply.read_ply`: binary PLY (x y z float32, red green blue uchar, confidence
  float32) via plyfile.
* `colmap_text.write_colmap_text`: COLMAP text model (cameras.txt with PINHOLE cameras,
  images.txt, points3D.txt) that `jaxrecon.data.formats.colmap.read_colmap` reads back exactly.
* `colmap_sparse.write_colmap_sparse`: COLMAP text model of triangulated tracks (POINTS2D per
  registered image, points3D with ERROR and TRACK[]) that COLMAP's bundle adjuster runs on.
* `report`: registration report of a per-scene fit (report.json, report.md, one summary line).
* `views`: colour-mapped PNGs of depth / confidence, poses.json, the input images + intrinsics,
  the output folder's preparation.

Conventions are the package's (see `jaxrecon.geometry`): OpenCV camera axes, top-left pixel centre
at (0, 0), `cam_from_world` = world-to-camera, depth = camera-frame z in model units.
"""
from jaxrecon.export.colmap_sparse import write_colmap_sparse
from jaxrecon.export.colmap_text import rotation_to_wxyz, write_colmap_text
from jaxrecon.export.ply import read_ply, write_ply
from jaxrecon.export.points import fuse_points
from jaxrecon.export.views import (colorize, read_images, read_intrinsics, resize_maps,
                                   write_poses_json)
