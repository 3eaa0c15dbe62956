"""Pure loss functions of Reliev3R and Rewis3d.

Each takes arrays (hyper-parameters keyword-only) and returns (scalar loss, dict of diagnostics);
masked means throughout, finite values and gradients on empty masks and degenerate geometry.
"""
from jaxrecon.losses.depth import median_mad_normalize, relative_depth_loss, ssi_depth_loss
from jaxrecon.losses.registration import registration_loss
from jaxrecon.losses.robust import robust_penalty
from jaxrecon.losses.segmentation import (cmc_loss, consistency_kl, masked_cross_entropy,
                                          student_teacher_loss)
from jaxrecon.losses.supervised import supervised_loss
