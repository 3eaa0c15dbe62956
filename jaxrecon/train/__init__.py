"""Training: train state, objectives, the sharded step, checkpoints and the loop."""
