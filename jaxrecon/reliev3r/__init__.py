"""Reliev3R (arXiv 2604.00548): a feed-forward reconstruction model trained from pseudo-labels only.

What is this method's alone, on the shared core and the one training engine:

  records     scene + expert outputs (tracks, monocular depth) -> training record; the jobs
              `python -m jaxrecon.prepare` caches
  pipeline    deterministic, resumable grain pipeline of fixed-shape multi-view samples
              (`PipelineConfig`, the config's `pipeline` schema)
  objective   relative depth + registration (or the supervised sibling), with the scale gauge
              fixed (`ObjectiveConfig`, the config's `objective` schema)
  step        train state and the jitted, batch-sharded train step
  task        the engine's task (`Reliev3RTask`), `train` and `evaluate_run` of configs/reliev3r.py

Submodules are imported explicitly (grain workers load only what they use).
"""
