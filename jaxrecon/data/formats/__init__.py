"""Scene readers (and a writer) for real data formats; each returns a `jaxrecon.data.scene.Scene`.

One module per format; every reader converts to the package's conventions (OpenCV camera axes,
pixel centres at integer coordinates, cam_from_world extrinsics, depth = camera z, 255 = ignore
label) and raises errors that name the file (and line) at fault (`jaxrecon.errors.UserError`, or
FileNotFoundError for a missing file).

  read_middlebury(folder, calibration=None)            Middlebury `*_par.txt` + images
  read_nerf(path, background=(255, 255, 255))          NeRF `transforms_*.json` (OpenGL, RGBA)
  read_tum(folder, intrinsics, depth_scale=None)       TUM / ICL-NUIM pose.txt + color/ + depth/
                                                       (depth_scale required with depth/)
  read_colmap(model_dir, image_dir)                    COLMAP text model (pinhole cameras)
  read_folder(folder) / write_folder(scene, folder)    the package's generic folder layout
  read_camvid(folder)                                  CamVid images/ + labels/ (void -> 255)
"""
from jaxrecon.data.formats.camvid import read_camvid
from jaxrecon.data.formats.colmap import read_colmap
from jaxrecon.data.formats.folder import read_folder, write_folder
from jaxrecon.data.formats.middlebury import read_middlebury
from jaxrecon.data.formats.nerf import read_nerf
from jaxrecon.data.formats.tum import read_tum

__all__ = ["read_camvid", "read_colmap", "read_folder", "read_middlebury", "read_nerf",
           "read_tum", "write_folder"]
