"""The embedded procedural world: seeded scenes rendered by a JAX ray caster, no download needed.

A world (`World`, made by `random_world`) is a textured ground, walls, boxes, spheres and vertical
cylinders under an open sky, some of them mirrors, stored as fixed-size arrays so the renderer
compiles once. `render` ray-casts it for given cameras (`paths`: orbit, forward walk, random
look-at, pan; `intrinsics_from_fov`) into RGB (supersampled), depth and semantic labels;
`make_scene` does it all from one seed and returns a `jaxrecon.data.scene.Scene`.

Conventions are the package's (see `jaxrecon.geometry`): OpenCV camera axes, pixel centres at
integer coordinates, `cam_from_world` 4x4, depth = camera z in metres (0 on sky). World z is up.

Semantic classes (`CLASSES`, the values of `Scene.labels`):
  0 sky, 1 ground, 2 wall, 3 box, 4 sphere, 5 cylinder, 6 mirror (any mirror-flagged object).
Sky is exactly where depth is 0.
"""
from jaxrecon.data.synthetic.make import PATHS, camera_path, make_scene
from jaxrecon.data.synthetic.paths import (forward_walk, intrinsics_from_fov, look_at, orbit,
                                           pan, random_look_at)
from jaxrecon.data.synthetic.render import render, render_view, subpixel_offsets
from jaxrecon.data.synthetic.world import (BOX, CLASSES, CYLINDER, GROUND, MIRROR, NUM_OBJECTS,
                                           SKY, SPHERE, WALL, World, flatten_textures,
                                           random_world)
