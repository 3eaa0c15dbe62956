"""Geometry for multi-view reconstruction: pure, jit/vmap/grad-safe JAX functions.

Conventions (stated once, used everywhere in jaxrecon)
------------------------------------------------------
* Camera axes: OpenCV. x right, y down, z forward (the camera looks down +z). A point is in front
  of a camera when its camera-frame z > 0.
* Pixels: (u, v) = (column, row), in pixels, with the centre of the top-left pixel at (0, 0); the
  image spans [-0.5, w - 0.5] x [-0.5, h - 0.5]. Intrinsics K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
  map camera coordinates to these pixels: u = fx x / z + cx, v = fy y / z + cy.
* Poses: 4x4 rigid transforms named `a_from_b` map b-coordinates to a-coordinates,
  X_a = a_from_b @ X_b. `cam_from_world` (extrinsics, "world-to-camera") and `world_from_cam`
  (camera-to-world, whose last column is the camera centre) are inverses. Functions that only read a
  pose also accept its top 3x4 block.
* Projection matrices: P = K [R | t] (3x4), world -> homogeneous pixel, with [R | t] = cam_from_world.
* Quaternions: (x, y, z, w), scalar last (as in TUM/ICL pose files and scipy), unit norm.
* Angles in radians. Depth means camera-frame z (not ray length), in world units.
* Shapes are written with letters: b batch, v views, h w pixels, n points, t tracks, k classes; a
  leading "..." means any number of batch axes, which broadcast.
* Degenerate input (empty masks, zero baseline, parallel rays, points behind a camera) gives finite
  values and finite gradients; functions that can fail to be well defined also return validity masks.
"""

from jaxrecon.geometry.alignment import apply_similarity, umeyama, weighted_mad, weighted_median
from jaxrecon.geometry.cameras import (backproject_depth, camera_centers, compose_poses,
                                       crop_intrinsics, inverse_intrinsics, invert_pose, make_pose,
                                       pixel_grid, project, projection_matrix, scale_intrinsics,
                                       transform_points, unproject)
from jaxrecon.geometry.rotations import (axis_angle_to_matrix, matrix_to_axis_angle,
                                         matrix_to_quaternion, quaternion_to_matrix,
                                         random_rotation, rotation_angle, rotation_from_9d)
from jaxrecon.geometry.sampling import sample_bilinear
from jaxrecon.geometry.triangulation import TriangulationInfo, triangulate, triangulate_with_info
