"""Pure loss functions of Reliev3R and Rewis3d; each returns (scalar loss, dict of diagnostics)."""
