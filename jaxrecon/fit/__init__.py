"""Per-scene fitting: the cameras and points of one scene from its tracks, honestly reported.

`fit_scene(tracks, visibility, intrinsics, *, depth_maps=None, settings=FitSettings(),
init_cam_from_world=None)` -> `FitResult` (poses, `registered` flags, points, per-view observation
counts and residuals, components, duplicates, per-stage convergence, warnings). Global
initialisation (`init`: `twoview`, `viewgraph`, `positions`), refinement by bundle adjustment
(`bundle`, Levenberg-Marquardt in JAX, its problems padded to the size `buckets` that let scenes
of a similar size share one compiled program) or by the registration loss (`objective`, `lbfgs`), and the
report (`report`). Problems a user must see are issued as `FitWarning`s.
"""
from jaxrecon.fit.init import GlobalInit, global_init
from jaxrecon.fit.scene import fit_scene
from jaxrecon.fit.settings import REFINERS, FitResult, FitSettings, FitWarning
