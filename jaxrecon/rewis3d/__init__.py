"""Rewis3d (arXiv 2603.06374): weakly supervised segmentation with 2D and 3D mean teachers tied by
a reconstructed point cloud.

What is this method's alone, on the shared core and the one training engine:

  records       scene + sparse labels + a reconstruction (ground truth or simulated) -> record
  estimated     records of a reconstruction estimated from the images, and the CamVid clips
  ffrm_records  ... from a trained Reliev3R run (the "ffrm" source)
  mvs_records   ... from tracks, per-scene fitting and plane-sweep stereo (the "mvs" source)
  augment       weak / strong augmentation of images and point clouds, pixels kept linked
  pipeline      grain pipeline of (2D crop, sampled points, 2D-3D links) samples
                (`SegPipelineConfig`, the config's `pipeline` schema)
  step          two-branch state and the jitted step: student-teacher + cross-modal consistency
                (`SegObjectiveConfig`, the config's `objective` schema)
  task          the engine's task (`Rewis3dTask`), `train_segmentation` and
                `evaluate_segmentation` of configs/rewis3d.py

Submodules are imported explicitly (grain workers load only what they use).
"""
