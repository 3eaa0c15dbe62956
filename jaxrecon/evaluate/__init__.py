"""Evaluation of the MapAnything / Reliev3R protocol: metrics (`metrics`, host-side numpy float64),
one scene's metric row (`scene`), reports and figures (`report`).

Importing this package does not import matplotlib; `jaxrecon.evaluate.report` does.
"""

from jaxrecon.evaluate.metrics import (align_cameras_sim3, camera_ate, camera_sim3, depth_metrics,
                                       pointmap_metrics, pose_auc, relative_pose_errors, rra, rta,
                                       scene_scale)
from jaxrecon.evaluate.scene import scene_metrics
