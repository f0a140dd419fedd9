"""Image--caption pairs: real ones offline (Debian packages), the toy world, and WIT-1024 in ``full``.

Every loader returns ``(images, captions)``: a list of ``n`` RGB ``PIL.Image.Image`` and a list of
``n`` strings, pair ``i`` being ``(images[i], captions[i])``.

``tuxpaint``
    The 785 captioned stamps of the Debian package ``tuxpaint-stamps-default`` (PNG + a ``.txt`` whose
    first line is an English caption), in sorted path order, transparent pixels composited on white.
``emoji``
    Every single-code-point emoji of Noto Color Emoji (Debian ``fonts-noto-color-emoji``) rendered
    with Pillow on white, captioned with its Unicode name ("grinning face").
``world``
    The book's toy world (:mod:`prhlib.world`): rendered scenes and their generated captions.
``wit_1024``
    The paper's 1,024 Wikipedia image--caption pairs (Hugging Face ``minhuh/prh``, revision
    ``wit_1024``, caption index 0). Full profile only: it downloads from the hub.

``n=None`` returns every pair in the canonical order (the book's shared feature cache relies on it);
``n=k`` returns ``k`` pairs drawn without replacement with ``seed``, kept in canonical order.
"""

from __future__ import annotations

import functools
import io
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from . import config
from ._checks import check_seed

DATASETS = ("tuxpaint", "emoji", "world", "wit_1024")

#: Where ``tuxpaint-stamps-default`` installs its stamps.
TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
#: Where ``fonts-noto-color-emoji`` installs its font.
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
#: The only pixel size of Noto Color Emoji's bitmap strikes.
EMOJI_SIZE = 109
#: Default size of ``load_pairs("world")`` when ``n`` is not given (the paper's 1,024 pairs).
WORLD_DEFAULT_N = 1024
#: The paper's data set on the Hugging Face hub.
WIT_REPO, WIT_REVISION = "minhuh/prh", "wit_1024"

_APT_HINT = (
    "Install it with: sudo apt-get install -y {pkg}   "
    "(in Colab: !apt-get -qq install -y {pkg}; as root, drop sudo)"
)

# Code points in Noto Color Emoji that are not pictures on their own: joiners, keycap and variation
# selectors, regional-indicator letters (flags need pairs), skin-tone swatches, tag characters.
_EMOJI_EXCLUDED_RANGES = (
    (0x0000, 0x00A8), (0x200D, 0x200D), (0x20E3, 0x20E3), (0xFE00, 0xFE0F),
    (0x1F1E6, 0x1F1FF), (0x1F3FB, 0x1F3FF), (0xE0000, 0xE007F),
)

# Unicode blocks used as coarse emoji categories.
_EMOJI_BLOCKS = (
    (0x2000, 0x2BFF, "symbols and arrows"),
    (0x3000, 0x33FF, "CJK symbols"),
    (0x1F000, 0x1F2FF, "enclosed and game symbols"),
    (0x1F300, 0x1F5FF, "miscellaneous symbols and pictographs"),
    (0x1F600, 0x1F64F, "emoticons"),
    (0x1F680, 0x1F6FF, "transport and map"),
    (0x1F700, 0x1F8FF, "geometric shapes"),
    (0x1F900, 0x1F9FF, "supplemental symbols and pictographs"),
    (0x1FA00, 0x1FAFF, "symbols and pictographs extended-A"),
)


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def to_rgb(image, background=(255, 255, 255)) -> Image.Image:
    """An RGB copy of ``image`` (PIL image or H x W x 3/4 uint8 array), transparency composited on ``background``."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"an image array must be H x W x 3 or H x W x 4, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"an image array must be uint8, got {image.dtype}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


class EncodedImages(Sequence):
    """A read-only list of images kept encoded (PNG/JPEG bytes), each decoded to RGB when accessed.

    ``images[i]`` is an RGB ``PIL.Image.Image`` decoded on every access; ``images[a:b]`` is another
    ``EncodedImages`` (nothing decoded). The encoders of :mod:`prhlib.models` decode one batch at a
    time, so 1,024 WIT photographs cost their compressed size in memory, not their pixels.

    Parameters
    ----------
    items : sequence of ``bytes``, of ``{"bytes": ..., "path": ...}`` dicts (Hugging Face ``datasets``
        images read with ``decode=False``) or of already decoded images (kept as they are)
    """

    def __init__(self, items):
        self._items = tuple(items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return EncodedImages(self._items[i])
        return _decode(self._items[i])

    def __repr__(self) -> str:
        return f"EncodedImages(n={len(self)})"


def _decode(item) -> Image.Image:
    """One entry of :class:`EncodedImages` as an RGB PIL image."""
    if isinstance(item, dict):
        raw = item.get("bytes")
        if raw is None and item.get("path"):
            raw = Path(item["path"]).read_bytes()
        if raw is None:
            raise ValueError(f"an encoded image has neither bytes nor a path: {sorted(item)}")
        item = raw
    if isinstance(item, (bytes, bytearray)):
        with Image.open(io.BytesIO(item)) as im:
            im.load()
            return to_rgb(im)
    return to_rgb(item)


def _subset_indices(total: int, n: int | None, seed: int) -> np.ndarray:
    """Indices of ``n`` of ``total`` items drawn without replacement (sorted); all of them for ``None``.

    ``seed`` must be an integer even when ``n`` is None: ``seed=None`` would draw different items on
    every call, so it is refused (the default ``0`` is the book's fixed choice, as in :mod:`prhlib.world`).
    """
    seed = check_seed(seed, "seed")
    if n is None:
        return np.arange(total)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    if n < 1 or n > total:
        raise ValueError(f"n={n} is out of range: this data set has {total} pairs (choose 1 <= n <= {total})")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=int(n), replace=False))


def _require(path: Path, package: str) -> None:
    if not path.exists():
        raise ValueError(
            f"{path} does not exist: the Debian package {package!r} is missing. " + _APT_HINT.format(pkg=package)
        )


# ---------------------------------------------------------------------------------------------
# tuxpaint
# ---------------------------------------------------------------------------------------------
def _read_caption(txt: Path) -> str:
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line:
            return line
    return ""


@functools.lru_cache(maxsize=2)
def _tuxpaint_records(root: str) -> tuple:
    """``(path, caption, category)`` of every PNG stamp with a caption file, in sorted path order."""
    base = Path(root)
    _require(base, "tuxpaint-stamps-default")
    records = []
    for png in sorted(base.rglob("*.png")):
        txt = png.with_suffix(".txt")
        if not txt.exists():
            continue
        caption = _read_caption(txt)
        if caption:
            records.append((str(png), caption, png.relative_to(base).parts[0]))
    if not records:
        raise ValueError(
            f"no captioned stamps under {base}: the Debian package 'tuxpaint-stamps-default' looks incomplete. "
            + _APT_HINT.format(pkg="tuxpaint-stamps-default")
        )
    return tuple(records)


def _tuxpaint(idx: np.ndarray) -> tuple[list, list, list]:
    records = _tuxpaint_records(str(TUXPAINT_DIR))
    images, captions, cats = [], [], []
    for i in idx:
        path, caption, cat = records[i]
        with Image.open(path) as im:
            im.load()
            images.append(to_rgb(im))
        captions.append(caption)
        cats.append(cat)
    return images, captions, cats


# ---------------------------------------------------------------------------------------------
# emoji
# ---------------------------------------------------------------------------------------------
def _emoji_excluded(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _EMOJI_EXCLUDED_RANGES)


def _emoji_block(cp: int) -> str:
    for lo, hi, label in _EMOJI_BLOCKS:
        if lo <= cp <= hi:
            return label
    return "other"


@functools.lru_cache(maxsize=2)
def _emoji_codepoints(font_path: str) -> tuple:
    """Single code points with a glyph in the font, a Unicode name, and a picture of their own."""
    _require(Path(font_path), "fonts-noto-color-emoji")
    from fontTools.ttLib import TTFont

    with TTFont(font_path, lazy=True) as font:
        cmap = font.getBestCmap()
    return tuple(cp for cp in sorted(cmap) if not _emoji_excluded(cp) and unicodedata.name(chr(cp), None))


@functools.lru_cache(maxsize=2)
def _emoji_font(font_path: str):
    from PIL import ImageFont

    return ImageFont.truetype(font_path, EMOJI_SIZE)


def render_emoji(char: str, font_path: str | Path | None = None) -> Image.Image:
    """Render one emoji with Noto Color Emoji, cropped to its ink and composited on white (RGB)."""
    from PIL import ImageDraw

    font_path = str(font_path or EMOJI_FONT)
    _require(Path(font_path), "fonts-noto-color-emoji")
    font = _emoji_font(font_path)
    canvas = Image.new("RGBA", (2 * EMOJI_SIZE, 2 * EMOJI_SIZE), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((EMOJI_SIZE // 4, EMOJI_SIZE // 4), char, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"the emoji font has no visible glyph for {char!r} (U+{ord(char[0]):04X})")
    return to_rgb(canvas.crop(box))


def _emoji(idx: np.ndarray) -> tuple[list, list, list]:
    cps = _emoji_codepoints(str(EMOJI_FONT))
    images, captions, cats = [], [], []
    for i in idx:
        ch = chr(cps[i])
        images.append(render_emoji(ch))
        captions.append(unicodedata.name(ch).lower())
        cats.append(_emoji_block(cps[i]))
    return images, captions, cats


# ---------------------------------------------------------------------------------------------
# toy world and WIT
# ---------------------------------------------------------------------------------------------
def _world(n: int | None, seed: int) -> tuple[list, list, list]:
    from . import world

    n = WORLD_DEFAULT_N if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    sample = world.sample(int(n), seed=seed)
    images = [to_rgb(np.ascontiguousarray(img)) for img in np.asarray(sample.images)]
    captions = [str(c) for c in sample.captions]
    return images, captions, [None] * len(captions)


def _wit(idx_n: int | None, seed: int) -> tuple[list, list, list]:
    if not config.is_full():
        raise ValueError(
            "'wit_1024' downloads the paper's WIT pairs from the Hugging Face hub and is only available in the "
            "full profile: set PRH_PROFILE=full (or call config.setup(profile='full')) on a machine with internet, "
            "or use an offline data set: 'tuxpaint', 'emoji' or 'world'."
        )
    config.require_network()  # seconds, not a hub timeout, on a machine without a network
    from datasets import load_dataset

    ds = load_dataset(WIT_REPO, revision=WIT_REVISION, split="train")
    if hasattr(ds, "cast_column"):  # keep the photographs encoded: decoded per batch by the encoders
        import datasets

        ds = ds.cast_column("image", datasets.Image(decode=False))
    idx = _subset_indices(len(ds), idx_n, seed)
    encoded, captions = [], []
    for i in idx:
        row = ds[int(i)]
        encoded.append(row["image"])
        captions.append(str(row["text"][0]))
    return EncodedImages(encoded), captions, [None] * len(captions)


def _size(name: str) -> int:
    if name == "tuxpaint":
        return len(_tuxpaint_records(str(TUXPAINT_DIR)))
    return len(_emoji_codepoints(str(EMOJI_FONT)))


def _load(name: str, n: int | None, seed: int) -> tuple[list, list, list]:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: choose one of {DATASETS}")
    seed = check_seed(seed, "seed")
    if name == "world":
        return _world(n, seed)
    if name == "wit_1024":
        return _wit(n, seed)
    idx = _subset_indices(_size(name), n, seed)
    return (_tuxpaint if name == "tuxpaint" else _emoji)(idx)


# ---------------------------------------------------------------------------------------------
# image collections without captions (the colour chapter's pixel statistics)
# ---------------------------------------------------------------------------------------------
#: scikit-image's colour photographs that ship inside the wheel (no download).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                  "retina", "stereo_motorcycle")
#: Where torchvision downloads CIFAR-10 from (checked before a download).
CIFAR10_HOSTS = (("www.cs.toronto.edu", 443),)


def skimage_photos() -> list[np.ndarray]:
    """The colour photographs of :data:`SKIMAGE_PHOTOS` plus scikit-learn's two sample photos,
    as uint8 ``H x W x 3`` arrays (10 images, all offline)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_PHOTOS:
        img = getattr(skimage.data, name)()
        photos.append(img[0] if isinstance(img, tuple) else img)
    photos.extend(load_sample_images().images)
    return photos


def tuxpaint_stamps(n: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Tux Paint's stamps (Debian ``tuxpaint-stamps-default``) as ``H x W x 4`` uint8 RGBA arrays.

    Unlike :func:`load_pairs`, which composites stamps on white for the vision models, the alpha channel
    is kept so that pixel pairs can skip the transparent background. Every PNG under
    :data:`TUXPAINT_DIR` (captioned or not) in sorted path order; ``n`` of them drawn with ``seed`` if given.
    """
    root = TUXPAINT_DIR
    files = sorted(root.rglob("*.png")) if root.exists() else []
    if not files:
        raise ValueError(f"no stamps under {root}: the Debian package 'tuxpaint-stamps-default' is missing. "
                         + _APT_HINT.format(pkg="tuxpaint-stamps-default"))
    files = [files[i] for i in _subset_indices(len(files), n, seed)]
    stamps = []
    for f in files:
        with Image.open(f) as im:
            stamps.append(np.asarray(im.convert("RGBA")))
    return stamps


def cifar10_images(n: int = 50_000, seed: int = 0) -> list[np.ndarray]:
    """``n`` CIFAR-10 training images (32 x 32 x 3 uint8), the paper's image set for colour statistics.

    Full profile: on first use torchvision downloads the data set into ``config.cache_dir("cifar10")``
    from :data:`CIFAR10_HOSTS`, which is checked first (a clear error within seconds without a network).
    """
    from torchvision.datasets import CIFAR10

    root = str(config.cache_dir("cifar10"))
    try:
        images = CIFAR10(root=root, train=True, download=False).data
    except RuntimeError:  # not downloaded yet
        config.check_network(hosts=CIFAR10_HOSTS)
        images = CIFAR10(root=root, train=True, download=True).data
    rows = _subset_indices(len(images), n, seed)
    return list(images[rows])


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def load_pairs(name: str, n: int | None = None, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    """Image--caption pairs.

    Parameters
    ----------
    name : {"tuxpaint", "emoji", "world", "wit_1024"}
    n : int or None
        Number of pairs; ``None`` for all of them in canonical order (``world``: 1,024).
    seed : int
        Which ``n`` pairs (and, for ``world``, which scenes). An integer in ``[0, 2**32 - 1]``; the
        default 0 is fixed, so every call gives the same pairs (``None`` raises, as in :mod:`prhlib.world`).

    Returns
    -------
    images : list of n PIL.Image.Image (RGB); for ``wit_1024`` an :class:`EncodedImages` (a read-only
        sequence that decodes each photograph when accessed)
    captions : list of n str

    Raises
    ------
    ValueError
        unknown name; ``n`` out of range; a seed that is not an integer; a missing Debian package (with
        the ``apt-get`` command); ``wit_1024`` outside the full profile.
    RuntimeError
        ``wit_1024`` when the hub cannot be reached (within seconds).
    """
    images, captions, _ = _load(name, n, seed)
    return images, captions


def load_labels(name: str, n: int | None = None, seed: int = 0) -> list[str]:
    """A category label per pair, aligned with :func:`load_pairs` called with the same arguments.

    ``tuxpaint``: the stamp's top-level folder (16 categories, e.g. ``"animals"``, ``"food"``);
    ``emoji``: the Unicode block (e.g. ``"emoticons"``, ``"transport and map"``).

    Raises
    ------
    ValueError
        for data sets without categories (``world``, ``wit_1024``) and the errors of :func:`load_pairs`.
    """
    if name in ("tuxpaint", "emoji"):
        idx = _subset_indices(_size(name), n, seed)
        if name == "tuxpaint":
            records = _tuxpaint_records(str(TUXPAINT_DIR))
            return [records[i][2] for i in idx]
        cps = _emoji_codepoints(str(EMOJI_FONT))
        return [_emoji_block(cps[i]) for i in idx]
    if name in DATASETS:
        raise ValueError(f"data set {name!r} has no category labels: use 'tuxpaint' or 'emoji'")
    raise ValueError(f"unknown data set {name!r}: choose one of {DATASETS}")


def size(name: str) -> int:
    """Number of pairs ``load_pairs(name)`` returns with ``n=None`` (offline data sets only)."""
    if name in ("tuxpaint", "emoji"):
        return _size(name)
    if name == "world":
        return WORLD_DEFAULT_N
    if name == "wit_1024":
        return 1024
    raise ValueError(f"unknown data set {name!r}: choose one of {DATASETS}")


# ---------------------------------------------------------------------------------------------
# held-out text: WordNet definitions of the ImageNet classes (appended for chapter 5's competence test)
# ---------------------------------------------------------------------------------------------
def load_definitions(n: int | None = None, seed: int = 0) -> tuple[list[str], list[str]]:
    """Terms and their dictionary definitions: a text-only data set that shares nothing with the pairs.

    The WordNet synsets of the 1,000 ImageNet-1k classes as shipped with ``timm``
    (``timm.data.ImageNetInfo``): the term is the synset's first lemma ("tabby"), the definition its
    WordNet gloss ("a cat with a grey or tawny coat mottled with black"). Entries whose term or
    definition repeats an earlier one are dropped (ImageNet has two "crane"s), so that every term has
    exactly one correct definition. Chapter 5 measures a text model's competence by how often a term's
    embedding is nearest to its own definition's.

    Parameters
    ----------
    n : int or None
        Number of entries; ``None`` for all of them in ImageNet class order.
    seed : int
        Which ``n`` entries (kept in class order).

    Returns
    -------
    terms : list of str
    definitions : list of str, ``definitions[i]`` defines ``terms[i]``

    Raises
    ------
    ValueError
        ``n`` not a positive integer at most the number of entries.
    """
    terms, glosses = _definition_records()
    idx = _subset_indices(len(terms), n, seed)
    return [terms[i] for i in idx], [glosses[i] for i in idx]


@functools.lru_cache(maxsize=1)
def _definition_records() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    lemmas = info.label_descriptions(detailed=False)
    detailed = info.label_descriptions(detailed=True)
    terms, glosses, seen = [], [], set()
    for lemma, full in zip(lemmas, detailed):
        term = lemma.split(",")[0].strip()
        gloss = full[len(lemma) + 2:].strip()  # detailed = "<lemmas>: <definition>"
        if term.lower() in seen or gloss.lower() in seen or not term or not gloss:
            continue
        seen.update((term.lower(), gloss.lower()))
        terms.append(term)
        glosses.append(gloss)
    return tuple(terms), tuple(glosses)
