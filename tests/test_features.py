"""prhlib.features: layer selection, zero-padding, and the on-disk cache (hit, corrupt file, version change)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prhlib import config, features, models


class Fake(models.Encoder):
    """Two layers of widths 3 and 5, deterministic in the pixels; counts its calls."""

    def __init__(self, cache_id="fake-v1"):
        super().__init__("fake", ["narrow", "wide"], [3, 5], cache_id=cache_id)
        self.calls = 0

    def _embed_batch(self, batch):
        self.calls += 1
        m = np.array([np.asarray(im, dtype=np.float32).mean(axis=(0, 1)) for im in batch])  # b x 3
        return [m, np.concatenate([m, m[:, :2] ** 2], axis=1)]


@pytest.fixture(autouse=True)
def tmp_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PRH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PRH_PROFILE", "small")
    monkeypatch.setitem(config._state, "profile", None)
    return tmp_path / "features"


def images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(8, 10, 3), dtype=np.uint8) for _ in range(n)]


def cache_files(folder):
    return sorted(folder.glob("*.safetensors"))


def test_extract_shapes_layers_and_padding():
    enc = Fake()
    f = features.extract(enc, images())
    assert f.shape == (6, 2, 5) and f.dtype == np.float32
    assert np.all(f[:, 0, 3:] == 0)  # the narrow layer is zero-padded
    assert features.extract(enc, images(), layers="last").shape == (6, 1, 5)
    narrow = features.extract(enc, images(), layers="narrow")
    assert narrow.shape == (6, 1, 3)  # padding trimmed to the selected layers
    np.testing.assert_array_equal(narrow[:, 0], f[:, 0, :3])
    np.testing.assert_array_equal(features.extract(enc, images(), layers=[1, 0]), f[:, ::-1])
    lst = features.extract_list(enc, images())
    assert [x.shape for x in lst] == [(6, 3), (6, 5)]
    assert enc.calls == 1  # one computation, every other call hit the cache


@pytest.mark.parametrize("bad", [5, -3, "conv9", [], [0, 1.5], None])
def test_bad_layer_requests(bad):
    with pytest.raises(ValueError):
        features.extract(Fake(), images(), layers=bad)


def test_wrong_modality_and_unknown_model():
    with pytest.raises(ValueError):
        features.extract(Fake(), ["a caption", "another"])
    with pytest.raises(ValueError, match="str"):
        features.extract("glove50", images())
    with pytest.raises(ValueError, match="unknown model"):
        features.extract("alexnet", images())


def test_cache_hit_returns_identical_features_without_recomputing(tmp_cache):
    enc = Fake()
    first = features.extract(enc, images())
    assert len(cache_files(tmp_cache)) == 1 and enc.calls == 1
    second = features.extract(enc, images())
    np.testing.assert_array_equal(first, second)
    assert enc.calls == 1
    # other inputs are another entry
    features.extract(enc, images(seed=1))
    assert enc.calls == 2 and len(cache_files(tmp_cache)) == 2
    assert not list(tmp_cache.glob("*.tmp"))  # atomic writes leave no temporary file
    # cache=False never reads nor writes
    features.extract(enc, images(), cache=False)
    assert enc.calls == 3 and len(cache_files(tmp_cache)) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_or_partial_cache_file_is_recomputed(tmp_cache, damage):
    enc = Fake()
    good = features.extract(enc, images())
    (path,) = cache_files(tmp_cache)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":  # same size, one feature byte changed: only the checksum can tell
        b = bytearray(raw)
        b[-3] ^= 0xFF
        path.write_bytes(bytes(b))
    elif damage == "garbage":
        path.write_bytes(b"\x00" * len(raw))
    else:
        path.write_bytes(b"")
    again = features.extract(enc, images())
    assert enc.calls == 2
    np.testing.assert_array_equal(again, good)
    assert features.load(path, features.cache_key("fake-v1", "static", features.input_hash(enc.validate(images()), "image"), 6))


def test_version_or_model_change_invalidates_the_cache(tmp_cache, monkeypatch):
    enc = Fake()
    features.extract(enc, images())
    monkeypatch.setattr(features, "__version__", "99.0")
    features.extract(enc, images())
    assert enc.calls == 2
    monkeypatch.setattr(features, "FORMAT_VERSION", features.FORMAT_VERSION + 1)
    features.extract(enc, images())
    assert enc.calls == 3
    other = Fake(cache_id="fake-v2")
    features.extract(other, images())
    assert other.calls == 1
    uncached = Fake(cache_id=None)
    features.extract(uncached, images())
    features.extract(uncached, images())
    assert uncached.calls == 2
    assert len(cache_files(tmp_cache)) == 4


def test_stale_key_in_a_file_is_not_trusted(tmp_cache):
    enc = Fake()
    feats = features.extract(enc, images())
    key = features.cache_key("fake-v1", "static", features.input_hash(enc.validate(images()), "image"), 6)
    path = features.cache_path(key)
    wrong = dict(key, inputs="0" * 32)
    features.save(path, feats + 1, wrong, ("narrow", "wide"), (3, 5))  # right file name, wrong key inside
    np.testing.assert_array_equal(features.extract(enc, images()), feats)
    assert enc.calls == 2


def test_real_model_extraction_is_cached_and_deterministic(tmp_cache):
    caps = ["A frog.", "A red apple.", "A fire engine."]
    a = features.extract("glove50", caps)

    def no_loading(name):
        raise AssertionError(f"{name} was loaded although its features are cached")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "_load", no_loading)
        b = features.extract("glove50", caps)
        assert features.layer_info("glove50", caps) == (("mean_word_vector",), (50,))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 1, 50)
    hist = features.extract_list("color_hist", images())
    assert len(hist) == 1 and hist[0].shape == (6, 48)
    assert features.clear_cache("glove50") == 1
    assert features.clear_cache() == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=2, max_size=6, unique=True))
def test_input_hash_depends_on_content_and_order(texts):
    h = features.input_hash(texts, "text")
    assert h == features.input_hash(list(texts), "text")
    assert h != features.input_hash(texts[::-1], "text")
    assert h != features.input_hash(texts[:-1], "text")


def test_image_hash_sees_pixels():
    from prhlib.data import to_rgb

    ims = [to_rgb(x) for x in images(3)]
    changed = images(3)
    changed[1][0, 0, 0] ^= 1
    assert features.input_hash(ims, "image") != features.input_hash([to_rgb(x) for x in changed], "image")


# ---------------------------------------------------------------------------------------------
# cache robustness: bad contents, stale temporary files, unusable locations
# ---------------------------------------------------------------------------------------------
def _key_and_path(enc, n=6):
    key = features.cache_key(enc.cache_id, enc.pooling, features.input_hash(enc.validate(images(n)), "image"), n)
    return key, features.cache_path(key)


@pytest.mark.parametrize("bad", ["nan", "inf", "float64"])
def test_cached_arrays_with_a_bad_dtype_or_non_finite_values_are_recomputed(tmp_cache, bad):
    from safetensors.numpy import save_file

    enc = Fake()
    good = features.extract(enc, images())
    key, path = _key_and_path(enc)
    arr = good.astype(np.float64) if bad == "float64" else good.copy()
    if bad != "float64":
        arr[0, 0, 0] = np.nan if bad == "nan" else np.inf
    meta = {"key": __import__("json").dumps(key, sort_keys=True), "checksum": features._checksum(arr),
            "layer_dims": "[3, 5]", "layer_names": '["narrow", "wide"]'}
    save_file({"features": arr}, str(path), metadata=meta)  # a self-consistent file with a bad array
    assert features.load(path, key) is None
    np.testing.assert_array_equal(features.extract(enc, images()), good)
    assert enc.calls == 2


def test_clear_cache_removes_files_left_by_killed_writes(tmp_cache):
    enc = Fake()
    features.extract(enc, images())
    _, path = _key_and_path(enc)
    stale = path.parent / ("." + path.name + ".abc123.tmp")  # what prhlib._io leaves when killed
    stale.write_bytes(b"half a file")
    other = path.parent / "notes.txt"
    other.write_text("not ours")
    assert features.clear_cache() == 2
    assert not stale.exists() and not path.exists() and other.exists()


def test_unwritable_cache_fails_before_computing_and_names_the_fixes(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("PRH_CACHE_DIR", str(blocker))
    enc = Fake()
    with pytest.raises(ValueError, match="PRH_CACHE_DIR.*cache=False"):
        features.extract(enc, images())
    assert enc.calls == 0  # nothing was computed and thrown away
    assert features.extract(enc, images(), cache=False).shape == (6, 2, 5)


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root ignores file permissions")
def test_read_only_cache_folder_fails_before_computing(tmp_cache):
    enc = Fake()
    tmp_cache.mkdir(parents=True, exist_ok=True)
    tmp_cache.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="not a writable folder.*PRH_CACHE_DIR"):
            features.extract(enc, images())
        assert enc.calls == 0
    finally:
        tmp_cache.chmod(0o755)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_something_odd_at_the_cache_path_is_never_opened(tmp_cache, kind):
    import os
    import threading

    enc = Fake()
    _, path = _key_and_path(enc)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    result = {}

    def run():
        try:
            features.extract(enc, images())
        except ValueError as err:
            result["err"] = str(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "extract hung on a FIFO at the cache path"
    assert "not a regular file" in result.get("err", "") and enc.calls == 0
    assert features.extract(enc, images(), cache=False).shape == (6, 2, 5)
