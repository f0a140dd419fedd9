"""Draw the book's logo and favicon: a shaded dodecahedron, one of Plato's five solids.

The faces are tinted from blue (facing left: the image models) to orange (facing right: the language
models); both are views of one solid, which is the hypothesis in one picture.

Usage::

    python tools/make_logo.py [OUT_DIR]      # default: book/_static

writes ``logo.png`` (512 x 512, transparent background) and ``favicon.ico`` (16, 32, 48 and 64 px).
Everything is computed here with numpy, scipy and Pillow (no fonts, no randomness), so the output is the
same on every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.spatial import ConvexHull

PHI = (1.0 + 5.0 ** 0.5) / 2.0
BLUE = np.array([44, 102, 184], dtype=float)     # faces turned left: the image side
ORANGE = np.array([236, 128, 36], dtype=float)   # faces turned right: the language side
MIDDLE = np.array([246, 240, 228], dtype=float)  # faces turned to the viewer: the shared form
EDGE = (27, 38, 64, 255)
LIGHT = np.array([-0.25, 0.40, 0.88])            # direction towards the light (x right, y up, z to viewer)
LOGO_SIZE = 512
ICON_SIZES = (16, 32, 48, 64)


def dodecahedron_vertices() -> np.ndarray:
    """The 20 vertices of a regular dodecahedron centred at the origin.

    Returns
    -------
    np.ndarray, shape (20, 3)
        (+-1, +-1, +-1), (0, +-1/phi, +-phi), (+-1/phi, +-phi, 0) and (+-phi, 0, +-1/phi), scaled to unit
        circumradius.
    """
    pts = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    for a in (-1, 1):
        for b in (-1, 1):
            pts += [(0, a / PHI, b * PHI), (a / PHI, b * PHI, 0), (a * PHI, 0, b / PHI)]
    v = np.array(pts, dtype=float)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def convex_faces(vertices: np.ndarray, decimals: int = 6) -> list[np.ndarray]:
    """Faces of a convex polyhedron as vertex-index cycles, counter-clockwise seen from outside.

    ``scipy.spatial.ConvexHull`` returns triangles; triangles with the same supporting plane are merged
    into one polygon, whose vertices are then ordered by angle around the face centre.

    Parameters
    ----------
    vertices : np.ndarray, shape (n, 3)
    decimals : int
        Rounding of the plane equations used to decide that two triangles are coplanar.

    Returns
    -------
    list of np.ndarray of int
        One index array per face (12 pentagons for the dodecahedron).
    """
    vertices = np.asarray(vertices, dtype=float)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 4:
        raise ValueError(f"vertices must be an (n >= 4, 3) array, got shape {vertices.shape}")
    hull = ConvexHull(vertices)
    planes: dict[tuple, set] = {}
    for simplex, eq in zip(hull.simplices, hull.equations):
        planes.setdefault(tuple(np.round(eq, decimals)), set()).update(int(i) for i in simplex)
    faces = []
    for eq, idx in sorted(planes.items()):
        idx = np.array(sorted(idx))
        normal = np.array(eq[:3])
        centre = vertices[idx].mean(axis=0)
        u = vertices[idx[0]] - centre
        u /= np.linalg.norm(u)
        w = np.cross(normal, u)
        rel = vertices[idx] - centre
        angles = np.arctan2(rel @ w, rel @ u)
        faces.append(idx[np.argsort(angles)])
    return faces


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation matrix R = Rz(roll) @ Rx(pitch) @ Ry(yaw), angles in radians; shape (3, 3)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def face_colour(normal: np.ndarray) -> tuple[int, int, int, int]:
    """Colour of a face with unit outward ``normal`` (shape (3,)), Lambert-shaded.

    The hue goes from blue (normal pointing left) through a pale neutral (pointing at the viewer) to orange
    (pointing right): ``t = clip(n_x / 0.6, -1, 1)``, base = lerp(MIDDLE, BLUE or ORANGE, |t|).
    """
    t = float(np.clip(normal[0] / 0.6, -1.0, 1.0))
    base = (1.0 - abs(t)) * MIDDLE + abs(t) * (BLUE if t < 0 else ORANGE)
    light = LIGHT / np.linalg.norm(LIGHT)
    shade = 0.74 + 0.30 * max(0.0, float(normal @ light))
    rgb = np.clip(base * shade, 0, 255).round().astype(int)
    return int(rgb[0]), int(rgb[1]), int(rgb[2]), 255


def render(size: int, supersample: int = 4, edge_width: float = 0.012, margin: float = 0.06,
           angles: tuple[float, float, float] = (0.45, 0.38, 0.12)) -> Image.Image:
    """Render the logo as an RGBA image of ``size`` x ``size`` pixels.

    Drawn at ``supersample`` times the size with Pillow's polygon fill (visible faces only, far to near),
    then downsampled with a Lanczos filter for anti-aliased edges.

    Parameters
    ----------
    size : int
        Output width and height in pixels (>= 8).
    supersample : int
        Oversampling factor (>= 1).
    edge_width : float
        Width of the edges as a fraction of the image size (at least one output pixel).
    margin : float
        Empty border on each side as a fraction of the image size.
    angles : (yaw, pitch, roll)
        Orientation of the solid, radians.
    """
    if size < 8 or supersample < 1:
        raise ValueError(f"need size >= 8 and supersample >= 1, got size={size}, supersample={supersample}")
    big = size * supersample
    vertices = dodecahedron_vertices() @ rotation(*angles).T
    faces = convex_faces(vertices)
    scale = big / 2 - margin * big  # unit circumradius fills the image minus the margin
    xy = np.column_stack([big / 2 + scale * vertices[:, 0], big / 2 - scale * vertices[:, 1]])
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    width = max(int(round(edge_width * big)), supersample)
    visible = []
    for f in faces:
        centre = vertices[f].mean(axis=0)
        normal = centre / np.linalg.norm(centre)   # faces of a centred regular solid: normal along the centre
        if normal[2] > 1e-9:
            visible.append((centre[2], f, normal))
    for _, f, normal in sorted(visible, key=lambda item: item[0]):
        pts = [tuple(p) for p in xy[f]]
        draw.polygon(pts, fill=face_colour(normal))
        draw.line(pts + [pts[0]], fill=EDGE, width=width, joint="curve")
    return img.resize((size, size), Image.Resampling.LANCZOS)


def main(out_dir: str | Path = "book/_static") -> tuple[Path, Path]:
    """Write ``logo.png`` and ``favicon.ico`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logo = out / "logo.png"
    render(LOGO_SIZE).save(logo, optimize=True)
    icons = [render(s, supersample=8, edge_width=0.03, margin=0.0) for s in ICON_SIZES]
    favicon = out / "favicon.ico"
    icons[-1].save(favicon, format="ICO", sizes=[(s, s) for s in ICON_SIZES], append_images=icons[:-1])
    return logo, favicon


if __name__ == "__main__":
    for path in main(*sys.argv[1:]):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
