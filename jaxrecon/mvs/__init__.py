"""Dense multi-view stereo by plane sweeping: calibrated images in, depth, confidence and a fused
point cloud out.

Conventions are the package's (see `jaxrecon.geometry`): OpenCV camera axes, pixel centres at
integer coordinates, `cam_from_world` 4x4 extrinsics, K 3x3, depth = camera z in world units.

  reconstruct_dense(images, K, cam_from_world, points=None, settings=MVSSettings(),
                    point_views=None)
      -> DenseResult(depth, confidence, ..., points, colors, point_confidence)
  VALIDATED: the settings the commands use (`MVSSettings(**VALIDATED)`).

The steps, each a pure jit-compiled function with its shapes in its docstring:
  `neighbours`: co-visibility x triangulation-angle view scores (`pair_weights`, `view_scores`),
    the best-scoring or a greedy covering choice of neighbours (`select_neighbours`,
    `select_covering_neighbours`, `covering_neighbours` one reference at a time), per-view depth ranges from sparse points (`depth_ranges`), and stand-in
    points from the camera frusta when there are none (`frustum_points`).
  `cost`: ZNCC (`zncc`, `box_mean`) and the plane-sweep cost volume with top-k aggregation over the
    neighbours, chunked over hypotheses (`sweep_cost`).
  `ground`: a second sweep direction, planes parallel to a ground plane found in the sparse
    points (`ground_plane`, `view_ground`, `ground_hypotheses`; `MVSSettings.ground_sweep`).
  `depth`: inverse-depth hypotheses, winner-take-all with parabolic refinement and a cost-profile
    confidence (`winner_take_all`), a per-pixel second sweep around the first estimate
    (`refinement_hypotheses`), a masked 3 x 3 median filter (`median_filter`).
  `reconstruct`: `view_depth` (all of the per-view steps for one reference view, jit-compiled
    once per settings) and `reconstruct_dense`, which loops over the views.
  `consistency`: forward-backward reprojection check across views (`geometric_consistency`) and
    the point cloud of the confident pixels (`fuse_points`, host side).
  `mono`: the alternative to the sweep when monocular depth maps exist: each view's map aligned
    (scale and shift, robustly) to the sparse model's points it observed, then the same check
    and fusion (`dense_from_mono`, `MonoSettings`).
"""
from jaxrecon.mvs.consistency import fuse_points, geometric_consistency
from jaxrecon.mvs.cost import box_mean, sweep_cost, zncc
from jaxrecon.mvs.depth import (inverse_depth_hypotheses, median_filter, refinement_hypotheses,
                                winner_take_all)
from jaxrecon.mvs.ground import GroundPlane, ground_hypotheses, ground_plane, view_ground
from jaxrecon.mvs.mono import (Alignment, MonoResult, MonoSettings, align_view, apply_alignment,
                               dense_from_mono)
from jaxrecon.mvs.neighbours import (covering_neighbours, depth_ranges, frustum_points,
                                     pair_weights, select_covering_neighbours, select_neighbours,
                                     view_scores)
from jaxrecon.mvs.reconstruct import (VALIDATED, DenseResult, MVSSettings, grey_images,
                                      reconstruct_dense, view_depth)
