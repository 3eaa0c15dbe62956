"""The training engine (one loop for every method), checkpoints, device-mesh sharding, progress and
finding a trained run; the methods (jaxrecon.reliev3r, jaxrecon.rewis3d) are tasks it runs."""
