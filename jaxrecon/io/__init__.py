"""Public file formats: every reader and writer of the package's files, host-side numpy.

Used by the scene readers (`jaxrecon.data.formats`), the experts, the export and the commands;
imports nothing else of the package. Errors name the file (and line) at fault. Conventions are
the package's (see `jaxrecon.geometry`): OpenCV camera axes, top-left pixel centre at (0, 0),
`cam_from_world` = world-to-camera, images RGB uint8 (h, w, 3), labels uint8 (h, w), raw 16-bit
depth uint16 (h, w).

  files          read_rgb / read_rgba / read_single_channel / write_png, list_images,
                 stack_same_size, read_json, parse_floats, as_matrix, require_file / require_dir
  pfm            read_pfm / write_pfm: PFM float maps (depth networks' output)
  ply            read_ply / write_ply: binary PLY point clouds with colour and confidence
  poses          write_poses_json (poses.json of the commands), rigid_inverse, check_rotation
  colmap_read    COLMAP text model parsers (cameras, images, 2D points, 3D points)
  colmap_text    write_colmap_text: COLMAP text model of posed images (+ fused points)
  colmap_sparse  write_colmap_sparse: COLMAP text model of triangulated tracks
  staging        StagedOutput / check_output_folder: a command's outputs appear complete or not
                 at all; remove_stray: temporary files a killed writer left
"""
from jaxrecon.io.colmap_read import (read_cameras_txt, read_images_txt, read_points2d_txt,
                                     read_points3d_txt)
from jaxrecon.io.colmap_sparse import write_colmap_sparse
from jaxrecon.io.colmap_text import rotation_to_wxyz, write_colmap_text
from jaxrecon.io.files import list_images, read_rgb, write_png
from jaxrecon.io.pfm import read_pfm, write_pfm
from jaxrecon.io.ply import read_ply, write_ply
from jaxrecon.io.poses import rigid_inverse, write_poses_json
