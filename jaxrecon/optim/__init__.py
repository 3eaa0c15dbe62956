"""Optimiser pieces: the EMA (mean) teacher as an optax transformation."""
from jaxrecon.optim.ema import EmaTeacherState, ema_teacher, rewis3d_decay, teacher_params
