"""Optimiser pieces: the EMA teacher as an optax transformation."""
