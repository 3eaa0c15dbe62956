"""Per-scene fitting: cameras and depths of one scene optimised directly with the losses.

`fit_scene(tracks, visibility, intrinsics, *, depth_maps=None, settings=FitSettings())` ->
`FitResult` (fitted cam_from_world (v, 4, 4), per-observation depths, history). Initialisations
(`init.INITS`): chained essential matrices, rotations only, identity. Uses geometry + losses only
(plus OpenCV for the essential matrices); see `scene` for the unknowns, schedule and gauge.
"""
from jaxrecon.fit.init import INITS, essential_init, initial_cameras, relative_pose
from jaxrecon.fit.scene import FitResult, FitSettings, fit_scene
