"""A toy world whose hidden scene is known exactly: the book's model organism.

Every sample is a *scene*: one or more objects, each with a shape, a colour from a named palette
(real sRGB values from the xkcd colour survey), a size and a position. The world shows each scene
twice, through two imperfect "sensors":

* an **image** (``H x W x 3`` uint8, 32 px by default) with nuisance: a random background level, a
  striped texture, pixel noise and a random rotation of each object;
* a **caption** (a short English sentence) with nuisance: paraphrase templates, synonyms and word order.

The hidden scene itself is the latent matrix ``Z`` (``n x m``): one-hot shape, the colour's CIELAB
coordinates, size, x and y, each group scaled so that it contributes equally to distances. ``Z`` is
the "platonic" representation of this world: any model's features can be scored against it with the
same metrics used between models (:func:`latent_kernel` gives the matching kernel).

Examples
--------
>>> from prhlib import world
>>> s = world.sample(4, seed=0)
>>> s.z.shape, s.images.shape, len(s.captions)
((4, 10), (4, 32, 32, 3), 4)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ._checks import check_int, check_seed

#: Shapes an object can have.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

#: Named colours with their sRGB values (0-255) from the xkcd colour survey (matplotlib's
#: ``XKCD_COLORS``): real names people gave to these exact colours.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (0xE5, 0x00, 0x00),
    "orange": (0xF9, 0x73, 0x06),
    "yellow": (0xFF, 0xFF, 0x14),
    "green": (0x15, 0xB0, 0x1A),
    "blue": (0x03, 0x43, 0xDF),
    "purple": (0x7E, 0x1E, 0x9C),
    "pink": (0xFF, 0x81, 0xC0),
    "brown": (0x65, 0x37, 0x00),
}
COLORS: tuple[str, ...] = tuple(PALETTE)

#: Attributes of an object.
ATTRIBUTES: tuple[str, ...] = ("shape", "color", "size", "x", "y")
#: Classification tasks: each attribute of the leftmost object, and the number of objects.
TASKS: tuple[str, ...] = ATTRIBUTES + ("count",)

#: Object diameter as a fraction of the image side: uniform on this interval.
SIZE_RANGE: tuple[float, float] = (0.25, 0.6)
SIZE_BINS: tuple[str, ...] = ("small", "medium", "large")
X_BINS: tuple[str, ...] = ("left", "middle", "right")
Y_BINS: tuple[str, ...] = ("top", "middle", "bottom")

#: Words a caption may use for each size bin (synonyms are nuisance).
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium-sized", "mid-sized"),
    "large": ("large", "big", "huge"),
}
#: Nouns used instead of the shape when the shape is dropped from the text.
GENERIC_NOUNS: tuple[str, ...] = ("object", "thing", "shape")
#: Phrases for each (vertical, horizontal) position bin.
POSITION_PHRASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("middle", "middle"): ("in the centre", "in the middle"),
    ("middle", "left"): ("on the left", "at the left"),
    ("middle", "right"): ("on the right", "at the right"),
    ("top", "middle"): ("at the top", "near the top"),
    ("bottom", "middle"): ("at the bottom", "near the bottom"),
    ("top", "left"): ("at the top left", "in the top left corner"),
    ("top", "right"): ("at the top right", "in the top right corner"),
    ("bottom", "left"): ("at the bottom left", "in the bottom left corner"),
    ("bottom", "right"): ("at the bottom right", "in the bottom right corner"),
}
#: Sentence templates; ``{o}`` is the list of object phrases.
TEMPLATES: tuple[str, ...] = (
    "{o}",
    "there is {o}",
    "a picture of {o}",
    "you can see {o}",
    "this image shows {o}",
)

DEFAULT_OPTIONS: dict = {
    "image_size": 32,
    "min_objects": 1,
    "max_objects": 1,
    "text_drop": (),
    "image_drop": (),
    "noise": 8.0,
    "texture": 25.0,
    "background": (50, 200),
    "rotation": 15.0,
    "paraphrase": True,
}
_DROPPABLE = ("shape", "color", "size", "position")
_SUPERSAMPLE = 4


# --------------------------------------------------------------------------------------------
# scenes
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Obj:
    """One object of a scene. ``size`` is the diameter and ``x, y`` the centre, as fractions of the
    image side (``y`` grows downwards, as in images); ``rotation`` (a draw in [-180, 180), scaled by
    the ``rotation`` option when rendered) is image nuisance."""

    shape: str
    color: str
    size: float
    x: float
    y: float
    rotation: float = 0.0

    @property
    def size_bin(self) -> str:
        lo, hi = SIZE_RANGE
        t = (self.size - lo) / (hi - lo)
        return SIZE_BINS[min(int(t * 3), 2)]

    @property
    def x_bin(self) -> str:
        return X_BINS[min(int(self.x * 3), 2)]

    @property
    def y_bin(self) -> str:
        return Y_BINS[min(int(self.y * 3), 2)]


@dataclass(frozen=True)
class Scene:
    """The hidden truth behind one sample: its objects, ordered from left to right."""

    objects: tuple[Obj, ...]

    def label(self, task: str) -> int:
        """Class index of ``task`` for this scene (attributes of the leftmost object; ``count``)."""
        if task == "count":
            return len(self.objects) - 1
        o = self.objects[0]
        if task == "shape":
            return SHAPES.index(o.shape)
        if task == "color":
            return COLORS.index(o.color)
        if task == "size":
            return SIZE_BINS.index(o.size_bin)
        if task == "x":
            return X_BINS.index(o.x_bin)
        if task == "y":
            return Y_BINS.index(o.y_bin)
        raise ValueError(f"unknown task {task!r}: choose from {TASKS}")


def n_classes(task: str, max_objects: int = 1) -> int:
    """Number of classes of ``task`` (``count`` has ``max_objects`` classes)."""
    sizes = {"shape": len(SHAPES), "color": len(COLORS), "size": 3, "x": 3, "y": 3, "count": max_objects}
    if task not in sizes:
        raise ValueError(f"unknown task {task!r}: choose from {TASKS}")
    return sizes[task]


def validate_options(options: dict) -> dict:
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise ValueError(f"unknown world option(s) {sorted(unknown)}: choose from {sorted(DEFAULT_OPTIONS)}")
    opts = {**DEFAULT_OPTIONS, **options}
    for key in ("text_drop", "image_drop"):
        value = opts[key]
        value = (value,) if isinstance(value, str) else tuple(value)
        bad = [v for v in value if v not in _DROPPABLE]
        if bad:
            raise ValueError(f"{key} may only contain {_DROPPABLE}, got {bad}")
        opts[key] = tuple(sorted(set(value)))
    size = int(opts["image_size"])
    if not 16 <= size <= 128:
        raise ValueError(f"image_size must be between 16 and 128 pixels, got {size}")
    opts["image_size"] = size
    lo, hi = int(opts["min_objects"]), int(opts["max_objects"])
    if not 1 <= lo <= hi <= 3:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= 3, got {lo}, {hi}")
    opts["min_objects"], opts["max_objects"] = lo, hi
    for key in ("noise", "texture", "rotation"):
        if not np.isfinite(opts[key]) or opts[key] < 0:
            raise ValueError(f"{key} must be a finite number >= 0, got {opts[key]}")
    b0, b1 = opts["background"]
    if not 0 <= b0 <= b1 <= 255:
        raise ValueError(f"background must be a (low, high) grey range within 0..255, got {opts['background']}")
    if opts["rotation"] > 180:
        raise ValueError(f"rotation must be at most 180 degrees, got {opts['rotation']}")
    opts["background"] = (int(b0), int(b1))
    return opts


def sample_scenes(n: int, rng: np.random.Generator, min_objects: int = 1, max_objects: int = 1) -> list[Scene]:
    """Draw ``n`` scenes: shapes and colours uniform, size uniform on :data:`SIZE_RANGE`, centres
    uniform where the object fits inside the image. Several objects are re-drawn (up to 50 times)
    until they do not overlap, then ordered from left to right."""
    scenes = []
    for _ in range(n):
        k = int(rng.integers(min_objects, max_objects + 1))
        for _attempt in range(50):
            objs = []
            for _j in range(k):
                shape = SHAPES[int(rng.integers(len(SHAPES)))]
                color = COLORS[int(rng.integers(len(COLORS)))]
                size = float(rng.uniform(*SIZE_RANGE))
                x = float(rng.uniform(size / 2, 1 - size / 2))
                y = float(rng.uniform(size / 2, 1 - size / 2))
                rot = float(rng.uniform(-180, 180))
                objs.append(Obj(shape, color, size, x, y, rot))
            if all(np.hypot(a.x - b.x, a.y - b.y) > (a.size + b.size) / 2
                   for i, a in enumerate(objs) for b in objs[i + 1:]):
                break
        scenes.append(Scene(tuple(sorted(objs, key=lambda o: o.x))))
    return scenes


# --------------------------------------------------------------------------------------------
# the latent Z
# --------------------------------------------------------------------------------------------
def color_lab(name: str) -> np.ndarray:
    """CIELAB (D65) coordinates of a palette colour, shape (3,)."""
    from skimage.color import rgb2lab

    if name not in PALETTE:
        raise ValueError(f"unknown colour {name!r}: choose from {COLORS}")
    rgb = np.asarray(PALETTE[name], dtype=float).reshape(1, 1, 3) / 255.0
    return rgb2lab(rgb).reshape(3)


_LAB_CACHE: dict[str, np.ndarray] = {}


def _lab(name: str) -> np.ndarray:
    if name not in _LAB_CACHE:
        _LAB_CACHE[name] = color_lab(name)
    return _LAB_CACHE[name]


def group_scales() -> dict[str, float]:
    """Scale of each attribute group so that, for two independent random objects, each group's
    expected squared distance is 1 (exact for the sampling of :func:`sample_scenes`).

    For x (and y): given the size s, x is uniform on [s/2, 1 - s/2], so its mean is 1/2 whatever
    s is and E(x - x')^2 = 2 Var(x) = E[(1 - s)^2] / 6, with s uniform on [a, b]:
    E[(1 - s)^2] = ((1 - a)^3 - (1 - b)^3) / (3 (b - a)).
    """
    k = len(SHAPES)
    shape_msd = 2.0 * (1 - 1 / k)  # E||e_i - e_j||^2 for uniform one-hot
    labs = np.stack([_lab(c) for c in COLORS])
    color_msd = float(((labs[:, None, :] - labs[None, :, :]) ** 2).sum(-1).mean())
    a, b = SIZE_RANGE
    size_msd = (b - a) ** 2 / 6.0
    pos_msd = ((1 - a) ** 3 - (1 - b) ** 3) / (3 * (b - a)) / 6.0
    return {"shape": shape_msd ** -0.5, "color": color_msd ** -0.5, "size": size_msd ** -0.5,
            "x": pos_msd ** -0.5, "y": pos_msd ** -0.5}


def latent_names(max_objects: int = 1) -> list[str]:
    """Column names of ``Z`` (per object slot; with several slots a ``present`` flag leads each)."""
    per = [f"shape={s}" for s in SHAPES] + ["L*", "a*", "b*", "size", "x", "y"]
    if max_objects == 1:
        return per
    return [f"obj{j}:{c}" for j in range(max_objects) for c in ["present"] + per]


def latent(scenes: list[Scene], max_objects: int | None = None) -> np.ndarray:
    """The hidden scene as numbers: ``Z`` of shape ``n x m``.

    Per object: one-hot shape (4), CIELAB of the colour (3), size, x, y; each group multiplied by
    the scale of :func:`group_scales`, so shape, colour, size, x and y weigh the same in distances.
    With ``max_objects > 1``, slots are ordered left to right, each led by a presence flag; empty
    slots are zeros.
    """
    if max_objects is None:
        max_objects = max(len(s.objects) for s in scenes)
    sc = group_scales()
    rows = []
    for s in scenes:
        if len(s.objects) > max_objects:
            raise ValueError(f"a scene has {len(s.objects)} objects but max_objects={max_objects}")
        slots = []
        for j in range(max_objects):
            if j < len(s.objects):
                o = s.objects[j]
                onehot = np.eye(len(SHAPES))[SHAPES.index(o.shape)] * sc["shape"]
                feats = np.concatenate([onehot, _lab(o.color) * sc["color"],
                                        [o.size * sc["size"], o.x * sc["x"], o.y * sc["y"]]])
                present = 1.0
            else:
                feats, present = np.zeros(len(SHAPES) + 6), 0.0
            slots.append(feats if max_objects == 1 else np.concatenate([[present], feats]))
        rows.append(np.concatenate(slots))
    return np.asarray(rows, dtype=np.float64)


def latent_kernel(z: np.ndarray, kind: str = "linear", sigma: float | None = None) -> np.ndarray:
    """The "platonic" kernel: similarity of samples in the hidden scene, ``n x n``.

    ``linear``: ``K = Zc Zc^T`` with ``Zc`` the column-centred ``Z``.
    ``rbf``: ``K_ij = exp(-||z_i - z_j||^2 / (2 sigma^2))``; ``sigma`` defaults to the median
    pairwise distance.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (n x m), got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("z contains NaN or inf")
    if kind == "linear":
        zc = z - z.mean(0, keepdims=True)
        return zc @ zc.T
    if kind == "rbf":
        sq = (z ** 2).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
        if sigma is None:
            iu = np.triu_indices(len(z), 1)
            sigma = float(np.median(np.sqrt(d2[iu]))) if len(iu[0]) else 1.0
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        return np.exp(-d2 / (2 * sigma ** 2))
    raise ValueError(f"kind must be 'linear' or 'rbf', got {kind!r}")


def platonic_features(z: np.ndarray) -> np.ndarray:
    """``Z`` ready to be scored like a model: columns centred, shaped ``n x 1 x m`` (one "layer").

    Every column of ``Z`` is positive on average (one-hots, sizes, positions), and the paper's
    protocol compares rows by their cosine: without centring, that common offset would dominate
    every neighbourhood. Centring makes the cosine kernel of ``Z`` the normalised version of
    :func:`latent_kernel`'s centred linear kernel.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (n x m), got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("z contains NaN or inf")
    return (z - z.mean(axis=0, keepdims=True))[:, None, :].astype(np.float32)


# --------------------------------------------------------------------------------------------
# captions
# --------------------------------------------------------------------------------------------
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object_phrase(o: Obj, rng: np.random.Generator, drop: tuple, paraphrase: bool) -> str:
    pick = (lambda seq: seq[int(rng.integers(len(seq)))]) if paraphrase else (lambda seq: seq[0])
    noun = pick(GENERIC_NOUNS) if "shape" in drop else o.shape
    adjs = []
    if "size" not in drop:
        adjs.append(pick(SIZE_WORDS[o.size_bin]))
    if "color" not in drop:
        adjs.append(o.color)
    if paraphrase and len(adjs) == 2 and rng.random() < 0.5:
        adjs = adjs[::-1]
    form = int(rng.integers(2)) if paraphrase and adjs else 0
    if form == 0:
        words = adjs + [noun]
        phrase = f"{_article(words[0])} {' '.join(words)}"
    else:
        phrase = f"{_article(noun)} {noun} that is {' and '.join(adjs)}"
    if "position" not in drop:
        phrase += " " + pick(POSITION_PHRASES[(o.y_bin, o.x_bin)])
    return phrase


def describe(scenes: list[Scene], seed: int = 0, text_drop=(), paraphrase: bool = True) -> list[str]:
    """Captions for ``scenes``: each names exactly the scene's attributes (minus ``text_drop``),
    with paraphrase nuisance drawn from ``seed`` (a new seed gives new paraphrases of the same scenes)."""
    opts = validate_options({"text_drop": text_drop, "paraphrase": paraphrase})
    return _describe(scenes, np.random.default_rng(seed), opts["text_drop"], bool(paraphrase))


def _describe(scenes, rng, drop, paraphrase) -> list[str]:
    out = []
    for s in scenes:
        phrases = [_object_phrase(o, rng, drop, paraphrase) for o in s.objects]
        objs = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))] if paraphrase else TEMPLATES[0]
        out.append(template.format(o=objs))
    return out


def tokenize(caption: str) -> list[str]:
    """Lower-case word tokens of a caption (hyphenated words stay whole)."""
    return re.findall(r"[a-z]+(?:-[a-z]+)*", caption.lower())


def vocabulary() -> list[str]:
    """Every word a caption of this world can contain, sorted."""
    words = set(SHAPES) | set(COLORS) | set(GENERIC_NOUNS) | {"a", "an", "that", "is", "and"}
    for seq in list(SIZE_WORDS.values()) + list(POSITION_PHRASES.values()) + [TEMPLATES]:
        for phrase in seq:
            words.update(tokenize(phrase.replace("{o}", "")))
    return sorted(words)


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------
def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if shape == "square":
        angles, radii = np.deg2rad(rot + np.array([45, 135, 225, 315])), np.full(4, r)
    elif shape == "triangle":
        angles, radii = np.deg2rad(rot + np.array([90, 210, 330])), np.full(3, r)
    elif shape == "cross":  # a plus sign: 12 corners, arm half-width r/3
        a = r / 3
        pts = np.array([(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r),
                        (-a, a), (-r, a), (-r, -a), (-a, -a)])
        t = np.deg2rad(rot)
        rotm = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        pts = pts @ rotm.T
        return [(cx + px, cy + py) for px, py in pts]
    else:
        raise ValueError(shape)
    return [(cx + rr * np.cos(t), cy - rr * np.sin(t)) for t, rr in zip(angles, radii)]


def _object_mask(o: Obj, size: int, drop: tuple, rotation: float) -> np.ndarray:
    """Anti-aliased coverage (0..1, ``size x size``) of one object: drawn at 4x, box-averaged down."""
    from PIL import Image, ImageDraw

    big = size * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    d = 0.42 if "size" in drop else o.size
    cx, cy = (0.5, 0.5) if "position" in drop else (o.x, o.y)
    shape = "circle" if "shape" in drop else o.shape
    r, cx, cy = d * big / 2, cx * big, cy * big
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        # polygons inscribed in the same circle look smaller: enlarge so areas are comparable
        scale = {"square": 1.1, "triangle": 1.25, "cross": 1.1}[shape]
        draw.polygon(_polygon(shape, cx, cy, r * scale, o.rotation * rotation / 180.0), fill=255)
    m = np.asarray(canvas, dtype=np.float32).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE)
    return m.mean(axis=(1, 3)) / 255.0


def render(scenes: list[Scene], rng: np.random.Generator, image_size: int = 32, noise: float = 8.0,
           texture: float = 25.0, background=(50, 200), image_drop=(), rotation: float = 15.0) -> np.ndarray:
    """Images of ``scenes`` (``n x H x W x 3`` uint8) with nuisance drawn from ``rng``: a grey
    background level uniform on ``background``, sinusoidal stripes of amplitude ``texture`` with a
    random orientation and period, Gaussian pixel noise of std ``noise``, random rotations.
    Each object turns by ``rotation / 180`` times its scene's random draw in [-180, 180) degrees
    (``rotation=180`` gives every orientation). ``image_drop`` hides attributes: colour (objects
    white), size (all one size), position (all centred), shape (all circles)."""
    if not 0 <= rotation <= 180:
        raise ValueError(f"rotation must be between 0 and 180 degrees, got {rotation}")
    n, h = len(scenes), image_size
    drop = tuple(image_drop)
    yy, xx = np.mgrid[0:h, 0:h].astype(np.float32) / h
    level = rng.uniform(*background, size=n).astype(np.float32)
    theta = rng.uniform(0, np.pi, size=n).astype(np.float32)
    freq = rng.uniform(1.5, 5.0, size=n).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=n).astype(np.float32)
    pix_noise = rng.normal(0.0, 1.0, size=(n, h, h, 3)).astype(np.float32) * np.float32(noise)
    arg = (np.cos(theta)[:, None, None] * xx + np.sin(theta)[:, None, None] * yy) * freq[:, None, None]
    img = level[:, None, None] + np.float32(texture) * np.sin(2 * np.pi * arg + phase[:, None, None])
    img = np.repeat(img[..., None], 3, axis=-1)
    for i, s in enumerate(scenes):
        for o in s.objects:
            alpha = _object_mask(o, h, drop, rotation)[..., None]
            rgb = np.array((255, 255, 255) if "color" in drop else PALETTE[o.color], dtype=np.float32)
            img[i] = img[i] * (1 - alpha) + rgb * alpha
    img += pix_noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------
@dataclass
class WorldSample:
    """``n`` samples of the world: hidden scenes, their latent ``z``, images and captions."""

    scenes: list[Scene]
    z: np.ndarray
    images: np.ndarray
    captions: list[str]
    options: dict = field(default_factory=dict)
    seed: int = 0

    def __len__(self) -> int:
        return len(self.scenes)

    def labels(self, task: str) -> np.ndarray:
        """Integer class labels of ``task`` for every sample, shape (n,)."""
        return np.array([s.label(task) for s in self.scenes], dtype=np.int64)

    def subset(self, idx) -> "WorldSample":
        """The samples at positions ``idx`` (same order)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return WorldSample([self.scenes[i] for i in idx], self.z[idx], self.images[idx],
                           [self.captions[i] for i in idx], dict(self.options), self.seed)


def sample(n: int, seed: int = 0, **options) -> WorldSample:
    """Draw ``n`` samples of the world.

    Parameters
    ----------
    n : int
        Number of samples (>= 1).
    seed : int
        Same seed, same scenes, images and captions; the scenes, the image nuisance and the text
        nuisance use three independent streams, so changing e.g. ``text_drop`` keeps scenes and images.
    **options
        ``image_size`` (32), ``min_objects``/``max_objects`` (1, at most 3), ``text_drop`` and
        ``image_drop`` (subsets of ``shape, color, size, position``: information asymmetry),
        ``noise`` (8.0, pixel std), ``texture`` (25.0, stripe amplitude), ``background`` ((50, 200)
        grey range), ``rotation`` (15.0, the largest rotation of an object in degrees),
        ``paraphrase`` (True).

    Returns
    -------
    WorldSample
        ``.z`` (n x m float64), ``.images`` (n x H x W x 3 uint8), ``.captions`` (n str),
        ``.scenes`` (n :class:`Scene`).
    """
    n = check_int(n, "n", minimum=1)
    seed = check_seed(seed)
    opts = validate_options(options)
    ss_scene, ss_image, ss_text = np.random.SeedSequence(int(seed)).spawn(3)
    scenes = sample_scenes(n, np.random.default_rng(ss_scene), opts["min_objects"], opts["max_objects"])
    z = latent(scenes, opts["max_objects"])
    images = render(scenes, np.random.default_rng(ss_image), opts["image_size"], opts["noise"],
                    opts["texture"], opts["background"], opts["image_drop"], opts["rotation"])
    captions = _describe(scenes, np.random.default_rng(ss_text), opts["text_drop"], opts["paraphrase"])
    return WorldSample(scenes, z, images, captions, opts, int(seed))
