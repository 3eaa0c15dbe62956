"""Quick-start demo: fit cameras and depth maps of one small scene from weak supervision only.

    python -m jaxrecon.demo [--seed 0] [--views 5] [--steps 300] [--form angular] [--quiet]

Runs on a CPU in seconds with no data. An analytic scene (a ground plane, two walls and a box, all
rectangles; sky beyond) is ray cast from v cameras on an arc. The fit never sees the ground truth,
only what Reliev3R's experts would give it:

* a "monocular" depth map per view: the true depth under an unknown per-view affine map (scale and
  shift) with 1% noise, and wrong but finite values on the sky;
* sparse tracks: surface points seen by several cameras, with 0.3 px noise and 10% outliers;
* the intrinsics, and a rough initial guess of the poses (5-10 degree rotation errors); the
  initial depth is the pseudo-depth rescaled to a distance guessed from those poses.

Unknowns: per-view log-depth maps at full resolution (with an explicit per-view scale and shift),
per-pixel confidence maps, camera poses (9D rotation + translation). Objective: the
ambiguity-aware relative depth loss (the shape of each depth map, never its scale or shift) plus
lambda times a registration loss over the tracks (which has to find the per-view scale and shift
and the poses), minimised with Adam. The table at the end compares the initial guess with the fit
under the alignments weak supervision cannot resolve: relative rotations of camera pairs, camera
centres after a similarity (Umeyama), depth after a per-view median scale.

A stand-in for `python -m jaxrecon.main` until the trainer exists. Modules: `scene` (the analytic
scene and simulated experts, numpy), `fit` (unknowns, objective, jitted step, evaluation), `cli`.
"""
