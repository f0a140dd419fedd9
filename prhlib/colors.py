"""The colour case study: named colours, CIELAB, image co-occurrence (PMI), MDS and Kabsch--Umeyama.

The paper (Huh et al. 2024, Fig. 8 and App. D) builds three pictures of colour space and notes that they
look alike:

* **perception** -- each colour's coordinates in CIELAB, a space built so that Euclidean distance
  roughly follows how different two colours look to people;
* **vision** -- how often two colours occur next to each other in images: pixel pairs sampled within
  a small radius, joint counts, pointwise mutual information (PMI), dissimilarity ``-PMI + max(PMI)``;
* **language** -- sentence embeddings of colour words placed in three templates and averaged.

Every representation is reduced to an ``n x n`` dissimilarity matrix between the same ``n`` colours,
embedded in 3-D with metric MDS and rotated onto CIELAB with Kabsch--Umeyama, for the pictures; and
compared with CIELAB's distances by RSA with a shuffled-colour null, for the numbers.

Shapes: ``rgb`` and ``lab`` arrays are ``(..., 3)``; sRGB components are floats in ``[0, 1]``; CIELAB
uses the D65 white point and the 2-degree observer (``L*`` in ``[0, 100]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _optional

_optional.ensure(("colour", "skimage"), "colour")

from ._checks import check_float, check_int, check_seed

# --------------------------------------------------------------------------------------------------
# Named colours
# --------------------------------------------------------------------------------------------------

#: Berlin & Kay's 11 basic colour terms of English.
BASIC_TERMS = ("black", "white", "red", "green", "yellow", "blue", "brown", "purple", "pink", "orange",
               "gray")

#: The 20 colour categories of Lindsey & Brown (2014): the 11 basic terms plus nine non-basic
#: chromatic terms of American English.
LINDSEY_BROWN_20 = BASIC_TERMS + ("peach", "teal", "lavender", "maroon", "tan", "olive", "lime", "navy",
                                  "magenta")

#: The paper's three sentence templates for a colour word (App. D); embeddings are averaged over them.
TEMPLATES = ("The color {}.", "This color is {}.", "The color of this thing is {}.")

#: American spellings used in sentences, for xkcd names spelled the British way.
_XKCD_SPELLING = {"gray": "grey"}

#: Names accepted by :func:`named_colors`.
COLOR_SETS = ("xkcd", "css4", "basic", "lindsey_brown", "munsell")


@dataclass(frozen=True)
class ColorSet:
    """Named colours with their sRGB and CIELAB coordinates (``n`` colours)."""

    #: tuple of ``n`` colour names
    names: tuple
    #: sRGB in ``[0, 1]``, shape (n, 3)
    rgb: np.ndarray
    #: CIELAB (D65) from :func:`to_lab`, shape (n, 3)
    lab: np.ndarray
    #: which list the colours come from
    source: str = ""

    def __len__(self) -> int:
        return len(self.names)

    @property
    def hex(self) -> list:
        """``#rrggbb`` strings, for plotting the colours in themselves."""
        return [to_hex(c) for c in self.rgb]

    def subset(self, names) -> "ColorSet":
        """The colours called ``names``, in that order (``ValueError`` for an unknown name)."""
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise ValueError(f"colours not in the {self.source!r} set: {missing}")
        rows = [index[n] for n in names]
        return ColorSet(tuple(names), self.rgb[rows], self.lab[rows], self.source)


def to_hex(rgb) -> str:
    """``#rrggbb`` for one sRGB colour in ``[0, 1]``."""
    r, g, b = (int(round(float(c) * 255)) for c in _check_rgb(np.asarray(rgb, dtype=float)))
    return f"#{r:02x}{g:02x}{b:02x}"


def _hex_to_rgb(code: str) -> np.ndarray:
    code = code.lstrip("#")
    return np.array([int(code[i:i + 2], 16) for i in (0, 2, 4)], dtype=float) / 255.0


def named_colors(source: str = "lindsey_brown") -> ColorSet:
    """Named colours from one of :data:`COLOR_SETS`.

    ``"xkcd"``
        the 949 most agreed-on names of the xkcd colour survey (via matplotlib), each at the survey's
        mean colour for that name;
    ``"css4"``
        the 148 CSS4 / X11 web colours (via matplotlib);
    ``"basic"``
        :data:`BASIC_TERMS` at their xkcd-survey colours;
    ``"lindsey_brown"``
        :data:`LINDSEY_BROWN_20` at their xkcd-survey colours (the paper's 20 words);
    ``"munsell"``
        the Munsell renotation chips inside the sRGB gamut, see :func:`munsell_colors`.
    """
    from matplotlib import colors as mcolors

    source = str(source).lower()
    if source == "xkcd":
        items = [(k[len("xkcd:"):], v) for k, v in mcolors.XKCD_COLORS.items()]
    elif source == "css4":
        items = list(mcolors.CSS4_COLORS.items())
    elif source in ("basic", "lindsey_brown"):
        words = BASIC_TERMS if source == "basic" else LINDSEY_BROWN_20
        items = [(w, mcolors.XKCD_COLORS["xkcd:" + _XKCD_SPELLING.get(w, w)]) for w in words]
    elif source == "munsell":
        return munsell_colors()
    else:
        raise ValueError(f"unknown colour set {source!r}: choose one of {COLOR_SETS}")
    names = tuple(k for k, _ in items)
    rgb = np.stack([_hex_to_rgb(v) for _, v in items])
    return ColorSet(names, rgb, to_lab(rgb), source)


def munsell_colors(kind: str = "real") -> ColorSet:
    """Munsell renotation chips (colour-science's data), converted to sRGB; out-of-gamut chips dropped.

    The renotation gives each chip (hue, value, chroma) as CIE xyY under illuminant C. We convert
    xyY -> XYZ -> sRGB with a CAT02 adaptation from C to D65 and keep the chips whose sRGB lies in
    ``[0, 1]``. ``kind`` is ``"real"`` (2,734 real chips), ``"1929"`` (the 1929 book) or ``"all"``
    (4,995 extrapolated ones too). Names look like ``"5R 4/14"`` (hue value/chroma).
    """
    import colour
    from colour.notation.datasets import munsell as md

    tables = {"real": md.MUNSELL_COLOURS_REAL, "1929": md.MUNSELL_COLOURS_1929, "all": md.MUNSELL_COLOURS_ALL}
    if kind not in tables:
        raise ValueError(f"unknown Munsell set {kind!r}: choose one of {tuple(tables)}")
    specs, xyy = zip(*tables[kind])
    xyy = np.array(xyy, dtype=float)
    xyy[:, 2] /= 100.0  # the renotation's Y is in percent
    xyz = colour.xyY_to_XYZ(xyy)
    illuminant_c = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["C"]
    rgb = colour.XYZ_to_sRGB(xyz, illuminant=illuminant_c, chromatic_adaptation_transform="CAT02")
    inside = np.all((rgb >= 0.0) & (rgb <= 1.0), axis=1)
    names = tuple(f"{h} {v:g}/{c:g}" for (h, v, c), keep in zip(specs, inside) if keep)
    rgb = rgb[inside]
    return ColorSet(names, rgb, to_lab(rgb), f"munsell_{kind}")


# --------------------------------------------------------------------------------------------------
# CIELAB and colour differences
# --------------------------------------------------------------------------------------------------

def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 0 or rgb.shape[-1] != 3:
        raise ValueError(f"expected sRGB colours with a last axis of length 3, got shape {rgb.shape}")
    if not np.all(np.isfinite(rgb)):
        raise ValueError("sRGB colours contain NaN or inf")
    if rgb.min() < 0.0 or rgb.max() > 1.0:
        raise ValueError(f"sRGB colours must lie in [0, 1] (got range [{rgb.min():.3g}, {rgb.max():.3g}]); "
                         "divide 8-bit values by 255")
    return rgb


def _check_lab(lab) -> np.ndarray:
    lab = np.asarray(lab, dtype=float)
    if lab.ndim == 0 or lab.shape[-1] != 3:
        raise ValueError(f"expected CIELAB colours with a last axis of length 3, got shape {lab.shape}")
    if not np.all(np.isfinite(lab)):
        raise ValueError("CIELAB colours contain NaN or inf")
    return lab


def to_lab(rgb) -> np.ndarray:
    """CIELAB (D65, 2-degree observer) of sRGB colours in ``[0, 1]``.

    Parameters
    ----------
    rgb : array_like, shape (..., 3)

    Returns
    -------
    ndarray, shape (..., 3)
        ``(L*, a*, b*)``. White is (100, 0, 0), black (0, 0, 0), sRGB red (53.24, 80.09, 67.20).
    """
    from skimage.color import rgb2lab

    rgb = _check_rgb(np.asarray(rgb, dtype=float))
    return rgb2lab(rgb.reshape(-1, 1, 3)).reshape(rgb.shape)


def delta_e(lab_a, lab_b, method: str = "cie76") -> np.ndarray:
    """Colour difference between matching rows of two CIELAB arrays.

    ``"cie76"`` is the Euclidean distance in CIELAB, ``sqrt(dL^2 + da^2 + db^2)`` (the distance the
    paper's pictures use); ``"ciede2000"`` is the CIE's 2000 formula (scikit-image), closer to
    perceived differences for saturated colours. A difference of about 2.3 is "just noticeable".
    """
    from skimage.color import deltaE_ciede2000

    lab_a, lab_b = _check_lab(lab_a), _check_lab(lab_b)
    if lab_a.shape != lab_b.shape:
        raise ValueError(f"shapes differ: {lab_a.shape} vs {lab_b.shape}")
    if method == "cie76":
        return np.sqrt(((lab_a - lab_b) ** 2).sum(axis=-1))
    if method == "ciede2000":
        return deltaE_ciede2000(lab_a, lab_b)
    raise ValueError(f"unknown colour difference {method!r}: choose 'cie76' or 'ciede2000'")


def lab_distances(lab, method: str = "cie76") -> np.ndarray:
    """The ``n x n`` matrix of colour differences (:func:`delta_e`) between ``n`` CIELAB colours."""
    lab = _check_lab(lab)
    if lab.ndim != 2:
        raise ValueError(f"expected an n x 3 array of CIELAB colours, got shape {lab.shape}")
    n = lab.shape[0]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return delta_e(lab[i.ravel()], lab[j.ravel()], method).reshape(n, n)


def hue_angle(lab) -> np.ndarray:
    """CIELAB hue angle ``h = atan2(b*, a*)`` in degrees, in ``[0, 360)``: 0 red, 90 yellow, 180 green, 270 blue."""
    lab = _check_lab(lab)
    return np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360.0


def chroma(lab) -> np.ndarray:
    """CIELAB chroma ``C* = sqrt(a*^2 + b*^2)`` (0 for greys)."""
    lab = _check_lab(lab)
    return np.hypot(lab[..., 1], lab[..., 2])


#: Hue-angle range (degrees, CIELAB) counted as warm: from the pinkish reds through orange to yellow.
WARM_HUES = (330.0, 105.0)


def warm_cool(lab, chroma_min: float = 12.0) -> np.ndarray:
    """Label each colour ``"warm"``, ``"cool"`` or ``"neutral"`` from its CIELAB hue and chroma.

    Neutral: chroma below ``chroma_min`` (whites, greys, blacks). Warm: hue angle in
    :data:`WARM_HUES` (330 deg through 0 to 105 deg: reds, oranges, yellows, browns). Cool: the rest
    (yellow-greens, greens, blues, purples).
    """
    h, c = hue_angle(lab), chroma(lab)
    lo, hi = WARM_HUES
    warm = (h >= lo) | (h < hi)
    return np.where(c < chroma_min, "neutral", np.where(warm, "warm", "cool"))


# --------------------------------------------------------------------------------------------------
# Image co-occurrence: pixel pairs, joint counts, PMI
# --------------------------------------------------------------------------------------------------

def _as_rgba(image) -> np.ndarray:
    """An ``H x W x 4`` uint8 array (alpha 255 when the image has none)."""
    arr = np.asarray(image.convert("RGBA") if hasattr(image, "convert") else image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 (RGB) or H x W x 4 (RGBA) image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels (0-255), got dtype {arr.dtype}")
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return arr


def disc_offsets(radius: int) -> np.ndarray:
    """All integer offsets ``(dy, dx)`` with ``0 < dy^2 + dx^2 <= radius^2``, shape (m, 2)."""
    if int(radius) != radius or radius < 1:
        raise ValueError(f"radius must be a positive integer number of pixels, got {radius!r}")
    r = int(radius)
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    keep = (dy ** 2 + dx ** 2 <= r * r) & ((dy != 0) | (dx != 0))
    return np.stack([dy[keep], dx[keep]], axis=1)


def sample_pixel_pairs(images, n_pairs: int = 300_000, radius: int = 4, seed: int = 0,
                       alpha_threshold: int = 128, max_candidates: int | None = None):
    """Sample pairs of nearby pixels: the raw material of the paper's image co-occurrence.

    Each pair: a pixel drawn uniformly among the opaque pixels of all images together (so an image
    contributes in proportion to its opaque area), and a partner at an offset drawn uniformly from
    the disc of ``radius`` pixels (:func:`disc_offsets`). Candidates whose partner falls outside the
    image or on a transparent pixel (alpha below ``alpha_threshold``) are rejected; sampling is by
    rejection from all pixels, vectorised over every image at once.

    Parameters
    ----------
    images : sequence of (H, W, 3|4) uint8 arrays or PIL images (sizes may differ)
    n_pairs : int
    radius : int
    seed : int
    max_candidates : int, optional
        Give up (``ValueError``) after this many candidates; default ``100 * n_pairs + 10**6``.

    Returns
    -------
    (colors_a, colors_b) : two uint8 arrays, shape (n_pairs, 3)
        The RGB colours of the two pixels of each pair.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be positive, got {n_pairs}")
    offsets = disc_offsets(radius)
    arrays = [_as_rgba(im) for im in images]
    if not arrays:
        raise ValueError("no images given")
    heights = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    widths = np.array([a.shape[1] for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(heights * widths)])
    pixels = np.concatenate([a.reshape(-1, 4) for a in arrays])
    opaque = pixels[:, 3] >= alpha_threshold
    if not opaque.any():
        raise ValueError(f"no image has a pixel with alpha >= {alpha_threshold}")
    limit = int(max_candidates or 100 * n_pairs + 10 ** 6)
    rng = np.random.default_rng(seed)
    out_a, out_b, have, tried, rate = [], [], 0, 0, float(opaque.mean())
    while have < n_pairs:
        if tried >= limit:
            raise ValueError(f"only {have} of {n_pairs} pixel pairs found among {tried} candidates: the images "
                             f"are too small or too transparent for radius {radius}")
        m = int(min(2_000_000, 1.2 * (n_pairs - have) / max(rate, 1e-3) + 1024, limit - tried))
        g = rng.integers(len(pixels), size=m)
        off = offsets[rng.integers(len(offsets), size=m)]
        img = np.searchsorted(starts, g, side="right") - 1
        h, w = heights[img], widths[img]
        y, x = np.divmod(g - starts[img], w)
        y2, x2 = y + off[:, 0], x + off[:, 1]
        inside = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
        g2 = starts[img] + np.clip(y2, 0, h - 1) * w + np.clip(x2, 0, w - 1)
        ok = opaque[g] & inside & opaque[g2]
        out_a.append(pixels[g[ok], :3])
        out_b.append(pixels[g2[ok], :3])
        have += int(ok.sum())
        tried += m
        rate = have / tried
    return np.concatenate(out_a)[:n_pairs], np.concatenate(out_b)[:n_pairs]


def quantize(colors, levels: int = 8) -> np.ndarray:
    """Bin index of each uint8 RGB colour on a ``levels^3`` grid.

    Channel value ``v`` (0-255) falls in cell ``floor(v * levels / 256)``; the bin index is
    ``r * levels^2 + g * levels + b``.

    Parameters
    ----------
    colors : uint8 array, shape (..., 3)

    Returns
    -------
    int array, shape (...)
    """
    colors = np.asarray(colors)
    if colors.ndim == 0 or colors.shape[-1] != 3 or colors.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB colours of shape (..., 3), got {colors.dtype} {colors.shape}")
    if not 1 <= levels <= 256:
        raise ValueError(f"levels must be in 1..256, got {levels}")
    cells = (colors.astype(np.int64) * levels) // 256
    return (cells[..., 0] * levels + cells[..., 1]) * levels + cells[..., 2]


def bin_centers(levels: int = 8) -> np.ndarray:
    """sRGB (in ``[0, 1]``) of the centre of every bin of :func:`quantize`, shape (levels^3, 3)."""
    c = (np.arange(levels) + 0.5) / levels
    r, g, b = np.meshgrid(c, c, c, indexing="ij")
    return np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)


def cooccurrence(bins_a, bins_b, n_bins: int) -> np.ndarray:
    """Symmetric joint counts: ``C[u, v]`` = number of pairs with colours ``{u, v}`` (each pair counted
    once as ``(u, v)`` and once as ``(v, u)``), shape (n_bins, n_bins)."""
    bins_a, bins_b = np.asarray(bins_a).ravel(), np.asarray(bins_b).ravel()
    if bins_a.shape != bins_b.shape:
        raise ValueError(f"bins_a and bins_b differ in length: {bins_a.size} vs {bins_b.size}")
    if bins_a.size and (min(bins_a.min(), bins_b.min()) < 0 or max(bins_a.max(), bins_b.max()) >= n_bins):
        raise ValueError(f"bin indices must lie in 0..{n_bins - 1}")
    flat = np.concatenate([bins_a * n_bins + bins_b, bins_b * n_bins + bins_a])
    return np.bincount(flat, minlength=n_bins * n_bins).reshape(n_bins, n_bins)


def pmi_dissimilarity(pmi_matrix) -> np.ndarray:
    """The paper's dissimilarity ``-PMI + max(PMI)``, with the diagonal set to 0.

    The maximum is taken over all entries, so every off-diagonal dissimilarity is >= 0; a colour's
    dissimilarity to itself is defined as 0 (MDS needs a zero diagonal).
    """
    m = np.asarray(pmi_matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square PMI matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("the PMI matrix contains NaN or inf (empty cells? use prhlib.pmi.from_counts(..., smoothing>0))")
    d = -m + m.max()
    np.fill_diagonal(d, 0.0)
    return d


@dataclass(frozen=True)
class ImageColors:
    """Colour co-occurrence statistics of an image collection for ``n`` kept colours (see
    :func:`image_cooccurrence` and :func:`palette_cooccurrence`)."""

    #: grid bin (or palette) index of each kept colour, shape (n,)
    bins: np.ndarray
    #: sRGB of the bin centre (or palette colour), shape (n, 3)
    rgb: np.ndarray
    #: its CIELAB, shape (n, 3)
    lab: np.ndarray
    #: share of pixel-pair ends with this colour (among all sampled pairs), shape (n,)
    frequency: np.ndarray
    #: symmetric joint counts among the kept colours, shape (n, n)
    counts: np.ndarray
    #: pointwise mutual information, shape (n, n)
    pmi: np.ndarray
    #: ``-PMI + max(PMI)`` with a zero diagonal, shape (n, n)
    dissimilarity: np.ndarray
    #: the arguments that produced these statistics
    params: dict = field(default_factory=dict)

    @property
    def hex(self) -> list:
        return [to_hex(c) for c in self.rgb]


def image_cooccurrence(images, levels: int = 8, n_pairs: int = 300_000, radius: int = 4,
                       n_colors: int = 64, smoothing: float = 1.0, seed: int = 0) -> ImageColors:
    """The paper's image colour statistics: sample pixel pairs, quantise, count, PMI, dissimilarity.

    Keeps the ``n_colors`` most frequent bins of the ``levels^3`` grid; PMI is computed on the joint
    table restricted to pairs whose two colours are both kept, with a ``smoothing`` pseudo-count per
    cell (:func:`prhlib.pmi.from_counts`).
    """
    from .pmi import from_counts

    n_bins = levels ** 3
    if not 2 <= n_colors <= n_bins:
        raise ValueError(f"n_colors must be in 2..{n_bins} for levels={levels}, got {n_colors}")
    col_a, col_b = sample_pixel_pairs(images, n_pairs=n_pairs, radius=radius, seed=seed)
    bin_a, bin_b = quantize(col_a, levels), quantize(col_b, levels)
    freq = np.bincount(np.concatenate([bin_a, bin_b]), minlength=n_bins) / (2.0 * n_pairs)
    order = np.argsort(-freq, kind="stable")[:n_colors]
    kept = np.sort(order[freq[order] > 0])
    if len(kept) < 2:
        raise ValueError("fewer than two colours occur in the sampled pixel pairs")
    compact = np.full(n_bins, -1)
    compact[kept] = np.arange(len(kept))
    both = (compact[bin_a] >= 0) & (compact[bin_b] >= 0)
    counts = cooccurrence(compact[bin_a[both]], compact[bin_b[both]], len(kept))
    p = from_counts(counts, smoothing=smoothing)
    rgb = bin_centers(levels)[kept]
    params = dict(levels=levels, n_pairs=n_pairs, radius=radius, n_colors=n_colors, smoothing=smoothing,
                  seed=seed, pairs_kept=int(both.sum()))
    return ImageColors(kept, rgb, to_lab(rgb), freq[kept], counts, p, pmi_dissimilarity(p), params)


#: Spaces in which :func:`nearest_palette` can measure "nearest".
QUANTISE_SPACES = ("rgb", "lab")


def nearest_palette(colors, palette: ColorSet, space: str = "rgb", chunk: int = 65536) -> np.ndarray:
    """Index of the nearest palette colour for each uint8 RGB colour.

    ``space="rgb"`` measures Euclidean distance between sRGB coordinates in ``[0, 1]`` (the paper's
    pixel co-occurrence quantises in RGB); ``space="lab"`` uses CIE76 distance in CIELAB. Quantising in
    CIELAB builds CIELAB's adjacency into any statistic later compared with CIELAB, so it is offered
    only as a robustness check.

    Parameters
    ----------
    colors : uint8 array, shape (m, 3)
    palette : ColorSet of p colours
    space : {"rgb", "lab"}

    Returns
    -------
    int array, shape (m,)
    """
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] != 3 or colors.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB colours of shape (m, 3), got {colors.dtype} {colors.shape}")
    if space not in QUANTISE_SPACES:
        raise ValueError(f"unknown quantisation space {space!r}: choose one of {QUANTISE_SPACES}")
    # Convert each distinct colour once (photos repeat colours a lot).
    uniq, inverse = np.unique(colors, axis=0, return_inverse=True)
    if space == "lab":
        points, targets = to_lab(uniq / 255.0), _check_lab(palette.lab)
    else:
        points, targets = uniq / 255.0, _check_rgb(np.asarray(palette.rgb, dtype=float))
    best = np.empty(len(uniq), dtype=np.int64)
    for s in range(0, len(uniq), chunk):
        d = ((points[s:s + chunk, None, :] - targets[None, :, :]) ** 2).sum(-1)
        best[s:s + chunk] = d.argmin(axis=1)
    return best[np.ravel(inverse)]


def palette_cooccurrence(images, palette: ColorSet, n_pairs: int = 300_000, radius: int = 4,
                         smoothing: float = 1.0, seed: int = 0, space: str = "rgb") -> ImageColors:
    """Image co-occurrence of *named* colours: each pixel takes the name of its nearest palette colour.

    The same recipe as :func:`image_cooccurrence` (pixel pairs within ``radius``, joint counts, PMI,
    ``-PMI + max(PMI)``) with the RGB grid replaced by a palette, so that the image geometry covers
    exactly the colours the language models see as words. Rows follow ``palette.names``; ``bins`` holds
    the palette index and ``rgb``/``lab`` the palette's own colours. ``space`` is where "nearest" is
    measured (:func:`nearest_palette`): ``"rgb"`` (default, as the paper quantises) or ``"lab"``, which
    quantises in the space the result is compared with (a robustness check, not a test).
    """
    from .pmi import from_counts

    n = len(palette)
    if n < 2:
        raise ValueError("the palette needs at least two colours")
    if space not in QUANTISE_SPACES:
        raise ValueError(f"unknown quantisation space {space!r}: choose one of {QUANTISE_SPACES}")
    col_a, col_b = sample_pixel_pairs(images, n_pairs=n_pairs, radius=radius, seed=seed)
    both = nearest_palette(np.concatenate([col_a, col_b]), palette, space=space)
    idx_a, idx_b = both[:n_pairs], both[n_pairs:]
    counts = cooccurrence(idx_a, idx_b, n)
    freq = np.bincount(both, minlength=n) / (2.0 * n_pairs)
    p = from_counts(counts, smoothing=smoothing)
    params = dict(palette=palette.source, n_pairs=n_pairs, radius=radius, smoothing=smoothing, seed=seed,
                  pairs_kept=n_pairs, space=space)
    return ImageColors(np.arange(n), palette.rgb, palette.lab, freq, counts, p, pmi_dissimilarity(p), params)


# --------------------------------------------------------------------------------------------------
# Language: colour words in templates
# --------------------------------------------------------------------------------------------------

def template_sentences(words, templates=TEMPLATES) -> list:
    """Every word in every template, word-major: ``[t0(w0), t1(w0), t2(w0), t0(w1), ...]``."""
    words = list(words)
    if not words:
        raise ValueError("no colour words given")
    if any(not isinstance(w, str) or not w.strip() for w in words):
        raise ValueError("colour words must be non-empty strings")
    return [t.format(w) for w in words for t in templates]


def average_templates(features, n_templates: int = len(TEMPLATES)) -> np.ndarray:
    """Average sentence features over templates: ``(n * t, ...) -> (n, ...)`` (rows word-major as in
    :func:`template_sentences`)."""
    features = np.asarray(features, dtype=np.float64)
    if features.shape[0] % n_templates:
        raise ValueError(f"{features.shape[0]} rows is not a multiple of {n_templates} templates")
    return features.reshape(features.shape[0] // n_templates, n_templates, *features.shape[1:]).mean(axis=1)


def paper_layers(n_layers: int) -> list:
    """The paper's layer choice for a text model: the last four hidden states, concatenated
    (all of them when the model has fewer than four, e.g. one for static embeddings)."""
    return list(range(max(0, n_layers - 4), n_layers))


def word_embeddings(model, words, layers="paper", templates=TEMPLATES) -> np.ndarray:
    """Embeddings of colour words: each word in each template, through ``features.extract``, averaged
    over templates, the requested layers concatenated.

    Parameters
    ----------
    model : str (a :mod:`prhlib.models` name, e.g. ``"minilm_l6"`` or, in the full profile,
        ``"simcse_roberta_large"``) or :class:`prhlib.models.Encoder`
    words : sequence of n str
    layers : ``"paper"`` (:func:`paper_layers`), or anything ``features.extract`` accepts

    Returns
    -------
    ndarray, shape (n, L * d)
    """
    from . import features, models

    enc = models.get(model) if isinstance(model, str) else model
    if isinstance(layers, str) and layers == "paper":
        layers = paper_layers(len(enc.layer_names))
    sentences = template_sentences(words, templates)
    feats = average_templates(features.extract(enc, sentences, layers=layers), len(templates))
    return feats.reshape(feats.shape[0], -1)


def row_distances(x) -> np.ndarray:
    """``n x n`` Euclidean distances between the rows of ``x`` (shape (n, d)), float64.

    (Named so as not to shadow scikit-learn's ``euclidean_distances``; ``colors.euclidean_distances``
    still reaches it for chapter 6.)"""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an n x d array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf")
    sq = (x ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


# --------------------------------------------------------------------------------------------------
# Geometry: MDS and Kabsch--Umeyama
# --------------------------------------------------------------------------------------------------

def _check_dissimilarity(d) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"expected a square n x n dissimilarity matrix, got shape {d.shape}")
    if d.shape[0] < 3:
        raise ValueError(f"need at least 3 items, got {d.shape[0]}")
    if not np.all(np.isfinite(d)):
        raise ValueError("the dissimilarity matrix contains NaN or inf")
    if not np.allclose(d, d.T, atol=1e-8 * max(1.0, np.abs(d).max())):
        raise ValueError("the dissimilarity matrix is not symmetric")
    if d.min() < 0:
        raise ValueError("dissimilarities must be non-negative")
    if np.any(np.diag(d) != 0):
        raise ValueError("the dissimilarity matrix must have a zero diagonal")
    return d


def classical_mds(d, n_components: int = 3) -> np.ndarray:
    """Torgerson's classical MDS: the top eigenvectors of ``B = -1/2 J D^2 J``, scaled by sqrt(eigenvalue).

    Exact (up to rigid motion) when ``d`` are Euclidean distances of points in ``n_components``
    dimensions. Returns shape (n, n_components).
    """
    d = _check_dissimilarity(d)
    n = d.shape[0]
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (d ** 2) @ j
    vals, vecs = np.linalg.eigh(b)
    top = np.argsort(vals)[::-1][:n_components]
    return vecs[:, top] * np.sqrt(np.maximum(vals[top], 0.0))


def stress1(d, x) -> float:
    """Kruskal's normalised stress ``sqrt(sum (delta_ij - ||x_i - x_j||)^2 / sum delta_ij^2)`` over i < j."""
    d = np.asarray(d, dtype=np.float64)
    iu = np.triu_indices(d.shape[0], 1)
    fit = row_distances(x)[iu]
    return float(np.sqrt(((d[iu] - fit) ** 2).sum() / (d[iu] ** 2).sum()))


@dataclass(frozen=True)
class MDSResult:
    """``embedding`` (n x k), its Kruskal ``stress`` (:func:`stress1`), and the stress of every start."""

    embedding: np.ndarray
    stress: float
    start_stresses: np.ndarray


def mds(d, n_components: int = 3, n_starts: int = 16, seed: int = 0, max_iter: int = 300,
        eps: float = 1e-6) -> MDSResult:
    """Metric MDS by SMACOF (scikit-learn), best of many starts.

    Start 0 is classical MDS (:func:`classical_mds`); starts 1..n_starts-1 are Gaussian random
    configurations from ``numpy.random.default_rng(seed)``. The fit with the lowest stress wins.

    Parameters
    ----------
    d : array_like, shape (n, n)
        Symmetric, non-negative, zero diagonal.
    """
    from sklearn.manifold import smacof

    d = _check_dissimilarity(d)
    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    n = d.shape[0]
    rng = np.random.default_rng(seed)
    scale = np.sqrt((d ** 2).mean())
    inits = [classical_mds(d, n_components)]
    inits += [rng.normal(scale=scale / np.sqrt(2 * n_components), size=(n, n_components))
              for _ in range(n_starts - 1)]
    best, stresses = None, []
    for init in inits:
        x, _ = smacof(d, metric=True, n_components=n_components, init=init, n_init=1, max_iter=max_iter,
                      eps=eps, normalized_stress=False)
        s = stress1(d, x)
        stresses.append(s)
        if best is None or s < best[1]:
            best = (x, s)
    return MDSResult(best[0], best[1], np.array(stresses))


@dataclass(frozen=True)
class Similarity:
    """A similarity transform ``x -> scale * x @ rotation.T + translation``."""

    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    reflection: bool

    def apply(self, x) -> np.ndarray:
        return self.scale * np.asarray(x, dtype=np.float64) @ self.rotation.T + self.translation


def kabsch_umeyama(src, dst, reflection: bool = True, return_transform: bool = False):
    """Align ``src`` to ``dst`` by the best rotation, uniform scale and translation (Umeyama 1991).

    Minimises ``sum_i ||dst_i - (c R src_i + t)||^2``. With centred points ``X = src - mean``,
    ``Y = dst - mean`` and the SVD ``Y^T X / n = U S V^T``: ``R = U D V^T``,
    ``c = tr(S D) / var(X)``, ``t = mean(dst) - c R mean(src)``, where ``D = I`` when reflections
    are allowed (``reflection=True``, the paper's choice: MDS fixes a shape only up to reflection)
    and ``D = diag(1, ..., 1, sign det(U V^T))`` otherwise.

    Parameters
    ----------
    src, dst : array_like, shape (n, k)

    Returns
    -------
    aligned : ndarray, shape (n, k)
        ``src`` mapped onto ``dst``; with ``return_transform`` also the :class:`Similarity`.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape != dst.shape:
        raise ValueError(f"src and dst must be n x k arrays of one shape, got {src.shape} and {dst.shape}")
    if src.shape[0] < 2:
        raise ValueError("need at least two points")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("points contain NaN or inf")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, yd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum() / len(src)
    if var_s == 0:
        raise ValueError("src has all points equal: no rotation or scale is defined")
    u, s, vt = np.linalg.svd(yd.T @ xs / len(src))
    signs = np.ones(len(s))
    if not reflection and np.linalg.det(u @ vt) < 0:
        signs[-1] = -1.0
    rot = (u * signs) @ vt
    scale = float((s * signs).sum() / var_s)
    t = mu_d - scale * rot @ mu_s
    transform = Similarity(rot, scale, t, bool(np.linalg.det(rot) < 0))
    aligned = transform.apply(src)
    return (aligned, transform) if return_transform else aligned


# --------------------------------------------------------------------------------------------------
# RSA with a shuffled-colour null
# --------------------------------------------------------------------------------------------------

def rsa_test(d_a, d_b, method: str = "spearman", permutations: int = 1000, alpha: float = 0.05,
             seed: int = 0):
    """RSA between two ``n x n`` dissimilarity matrices over the same colours, with a Mantel null:
    :func:`prhlib.metrics.rsa_test` (one implementation; the image side has no features, only PMI).

    The score is Spearman's rho or Kendall's tau-b between the ``n(n-1)/2`` off-diagonal entries; the
    null relabels the colours of ``d_b`` (rows and columns together); p-value and threshold follow
    the exact rule of :func:`prhlib.metrics.permutation_p_value` / :func:`~prhlib.metrics.permutation_threshold`.
    A rank correlation ignores any *increasing* transform of either matrix; a decreasing one (a
    similarity such as ``exp(-0.001 dE^2)`` instead of the distance ``dE``) flips its sign.
    """
    from . import metrics

    return metrics.rsa_test(d_a, d_b, method=method, permutations=permutations, alpha=alpha, seed=seed)


def _check_test_options(permutations, alpha, seed) -> tuple[int, float, int]:
    return (check_int(permutations, "permutations", minimum=1),
            check_float(alpha, "alpha", 0.0, 1.0, low_inclusive=False, high_inclusive=False),
            check_seed(seed, "seed"))


def _permutation_summary(score: float, null: np.ndarray, alpha: float) -> tuple[float, float]:
    """p-value and threshold by the one exact rule of :mod:`prhlib.metrics` (observed score pooled)."""
    from . import metrics

    return (metrics.permutation_p_value(score, null),
            metrics.permutation_threshold(null, alpha, observed=score))


@dataclass(frozen=True)
class SeparationResult:
    """Between-group over within-group mean dissimilarity, with a shuffled-label null.

    ``score > 1``: the two groups sit apart; ``p_value = (1 + #{null >= score}) / (K + 1)``.
    """

    score: float
    p_value: float
    threshold: float
    null: np.ndarray
    groups: tuple
    sizes: tuple


def _separation(d: np.ndarray, in_a: np.ndarray) -> float:
    same = in_a[:, None] == in_a[None, :]
    off = ~np.eye(len(in_a), dtype=bool)
    return float(d[~same].mean() / d[same & off].mean())


def group_separation(d, labels, groups=("warm", "cool"), permutations: int = 1000, alpha: float = 0.05,
                     seed: int = 0) -> SeparationResult:
    """Do two groups of colours (e.g. warm and cool) sit apart in a dissimilarity matrix?

    Only the colours labelled ``groups[0]`` or ``groups[1]`` take part. The score is the mean
    dissimilarity between the groups divided by the mean dissimilarity within them; the null shuffles
    the labels among those colours (group sizes fixed).

    Parameters
    ----------
    d : array_like, shape (n, n)
    labels : sequence of n labels (e.g. from :func:`warm_cool`)
    """
    d = _check_dissimilarity(d)
    permutations, alpha, seed = _check_test_options(permutations, alpha, seed)
    labels = np.asarray(labels)
    if labels.shape != (d.shape[0],):
        raise ValueError(f"need one label per row of d: {labels.shape} vs {d.shape[0]} rows")
    a, b = groups
    keep = np.flatnonzero((labels == a) | (labels == b))
    sizes = (int((labels == a).sum()), int((labels == b).sum()))
    if min(sizes) < 2:
        raise ValueError(f"each group needs at least two colours, got {dict(zip(groups, sizes))}")
    sub = d[np.ix_(keep, keep)]
    in_a = labels[keep] == a
    same_group = (in_a[:, None] == in_a[None, :]) & ~np.eye(len(keep), dtype=bool)
    if sub[same_group].max() == 0:
        raise ValueError("all within-group dissimilarities are zero: the ratio is undefined")
    rng = np.random.default_rng(seed)
    score = _separation(sub, in_a)
    null = np.array([_separation(sub, rng.permutation(in_a)) for _ in range(permutations)])
    p_value, threshold = _permutation_summary(score, null, alpha)
    return SeparationResult(score, p_value, threshold, null, tuple(groups), sizes)


# --------------------------------------------------------------------------------------------------
# Names that moved (kept importable from here because chapter 6 calls them)
# --------------------------------------------------------------------------------------------------
_MOVED = {
    "skimage_photos": ("data", "skimage_photos"),
    "tuxpaint_stamps": ("data", "tuxpaint_stamps"),
    "cifar10_images": ("data", "cifar10_images"),
    "language_encoder": ("models", "get"),
    "scatter_colors": ("plotting", "scatter_colors"),
    "color_space_3d": ("plotting", "color_space_3d"),
    "euclidean_distances": ("colors", "row_distances"),
}


def __getattr__(name: str):
    """``colors.<old name>`` for the names in ``_MOVED``: the function at its new home (imported lazily)."""
    if name not in _MOVED:
        raise AttributeError(f"module 'prhlib.colors' has no attribute {name!r}")
    import importlib

    module, attr = _MOVED[name]
    return getattr(importlib.import_module(f"prhlib.{module}"), attr)
