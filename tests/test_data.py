"""prhlib.data: real image--caption pairs from Debian packages, the toy world, and the full-profile guard."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from prhlib import config, data


@pytest.fixture(autouse=True)
def small_profile(monkeypatch):
    monkeypatch.setenv("PRH_PROFILE", "small")
    monkeypatch.setitem(config._state, "profile", None)


@pytest.fixture
def clear_caches():
    data._tuxpaint_records.cache_clear()
    data._emoji_codepoints.cache_clear()
    yield
    data._tuxpaint_records.cache_clear()
    data._emoji_codepoints.cache_clear()


def test_tuxpaint_has_785_captioned_stamps_in_a_fixed_order():
    images, captions = data.load_pairs("tuxpaint")
    assert len(images) == len(captions) == 785 == data.size("tuxpaint")
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images)
    assert all(isinstance(c, str) and c.strip() == c and c for c in captions)
    assert captions[:3] == ["A frog.", "A frog.", "An Adelaide Rosella."]  # sorted path order
    labels = data.load_labels("tuxpaint")
    assert len(labels) == 785 and len(set(labels)) == 16 and labels[0] == "animals"


def test_tuxpaint_transparency_is_composited_on_white():
    images, _ = data.load_pairs("tuxpaint", n=20, seed=1)
    corners = np.array([np.asarray(im)[0, 0] for im in images])
    assert (corners == 255).all(axis=1).mean() > 0.8  # stamps sit on a transparent background


def test_subsets_are_seeded_sorted_and_aligned():
    _, all_caps = data.load_pairs("tuxpaint")
    _, caps = data.load_pairs("tuxpaint", n=25, seed=3)
    _, again = data.load_pairs("tuxpaint", n=25, seed=3)
    _, other = data.load_pairs("tuxpaint", n=25, seed=4)
    assert caps == again and caps != other
    idx = data._subset_indices(785, 25, 3)
    assert caps == [all_caps[i] for i in idx]
    labels = data.load_labels("tuxpaint", n=25, seed=3)
    assert labels == [data.load_labels("tuxpaint")[i] for i in idx]


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 3000), frac=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_subset_indices_property(total, frac, seed):
    n = max(1, int(frac * total))
    idx = data._subset_indices(total, n, seed)
    assert len(idx) == n == len(set(idx.tolist()))
    assert (np.diff(idx) > 0).all() and idx.min() >= 0 and idx.max() < total
    np.testing.assert_array_equal(idx, data._subset_indices(total, n, seed))


@pytest.mark.parametrize("n", [0, -1, 786, 2.5, True])
def test_bad_n_is_rejected(n):
    with pytest.raises(ValueError, match="n"):
        data.load_pairs("tuxpaint", n=n)


def test_emoji_pairs_are_rendered_and_named_by_unicode():
    images, captions = data.load_pairs("emoji", n=30, seed=0)
    assert data.size("emoji") > 1300
    assert all(im.mode == "RGB" and min(im.size) >= 20 for im in images)
    names = {unicodedata.name(chr(cp)).lower() for cp in data._emoji_codepoints(str(data.EMOJI_FONT))}
    assert set(captions) <= names
    assert all(np.asarray(im).std() > 10 for im in images)  # a picture, not a blank tile
    labels = data.load_labels("emoji", n=30, seed=0)
    assert len(labels) == 30 and "emoticons" in data.load_labels("emoji")


def test_render_emoji_draws_in_colour():
    im = np.asarray(data.render_emoji("\N{RED APPLE}")).astype(int)
    red = (im[..., 0] > 150) & (im[..., 1] < 100) & (im[..., 2] < 100)
    assert red.mean() > 0.2


def test_to_rgb_handles_alpha_arrays_and_rejects_junk():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    assert (np.asarray(data.to_rgb(rgba)) == 255).all()
    opaque = np.zeros((4, 4, 4), np.uint8)
    opaque[..., 3] = 255
    assert (np.asarray(data.to_rgb(opaque)) == 0).all()
    with pytest.raises(ValueError, match="uint8"):
        data.to_rgb(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="H x W"):
        data.to_rgb(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="PIL"):
        data.to_rgb("cat.png")


def test_missing_debian_packages_give_the_apt_get_command(monkeypatch, tmp_path, clear_caches):
    monkeypatch.setattr(data, "TUXPAINT_DIR", tmp_path / "no-stamps")
    with pytest.raises(ValueError, match="apt-get install -y tuxpaint-stamps-default"):
        data.load_pairs("tuxpaint")
    monkeypatch.setattr(data, "EMOJI_FONT", tmp_path / "NoEmoji.ttf")
    with pytest.raises(ValueError, match="apt-get install -y fonts-noto-color-emoji"):
        data.load_pairs("emoji")
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(data, "TUXPAINT_DIR", tmp_path / "empty")
    with pytest.raises(ValueError, match="incomplete"):
        data.load_pairs("tuxpaint")


def test_world_pairs_come_from_the_toy_world():
    from prhlib import world

    images, captions = data.load_pairs("world", n=6, seed=2)
    ref = world.sample(6, seed=2)
    assert captions == list(ref.captions)
    np.testing.assert_array_equal(np.asarray(images[0]), np.asarray(ref.images[0]))
    assert all(im.mode == "RGB" for im in images)


def test_wit_needs_the_full_profile_and_names_are_checked():
    with pytest.raises(ValueError, match="full profile"):
        data.load_pairs("wit_1024")
    with pytest.raises(ValueError, match="unknown data set"):
        data.load_pairs("imagenet")
    with pytest.raises(ValueError, match="no category labels"):
        data.load_labels("world")


def test_wit_code_path_with_a_stand_in_dataset(monkeypatch):
    """The full-profile loader on a fake 'minhuh/prh' (no network): revision, split, caption index 0, RGB."""
    import sys
    import types

    calls = {}
    rows = [{"image": Image.new("RGBA", (8, 6), (255, 0, 0, 0)), "text": [f"caption {i}", f"other {i}"]}
            for i in range(5)]

    class FakeDataset(list):
        pass

    def load_dataset(repo, revision=None, split=None):
        calls.update(repo=repo, revision=revision, split=split)
        return FakeDataset(rows)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setitem(config._state, "profile", "full")
    monkeypatch.setattr(config, "require_network", lambda: None)
    images, captions = data.load_pairs("wit_1024")
    assert calls == {"repo": "minhuh/prh", "revision": "wit_1024", "split": "train"}
    assert captions == [f"caption {i}" for i in range(5)]
    assert all(im.mode == "RGB" and im.size == (8, 6) for im in images)
    assert (np.asarray(images[0]) == 255).all()  # transparent pixels composited on white
    _, sub = data.load_pairs("wit_1024", n=2, seed=1)
    assert sub == [captions[i] for i in data._subset_indices(5, 2, 1)]


def test_wit_without_network_fails_fast_before_the_hub(monkeypatch):
    import sys
    import time

    monkeypatch.setenv("PRH_PROFILE", "full")
    monkeypatch.setitem(config._state, "network_ok", False)
    monkeypatch.setattr(config, "FULL_PROFILE_HOSTS", (("127.0.0.1", 9),))  # refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # importing it would fail: it must not be reached
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="internet.*PRH_PROFILE=small"):
        data.load_pairs("wit_1024")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("bad", [None, 1.5, True, -1, "0"])
def test_seed_must_be_a_fixed_integer(bad):
    # seed=None would give different pairs on every call; world.sample refuses it too
    for call in (lambda: data.load_pairs("tuxpaint", n=5, seed=bad), lambda: data.load_pairs("tuxpaint", seed=bad),
                 lambda: data.load_pairs("world", n=3, seed=bad), lambda: data.load_labels("emoji", n=3, seed=bad),
                 lambda: data.tuxpaint_stamps(n=2, seed=bad)):
        with pytest.raises(ValueError, match="seed"):
            call()


def test_default_seed_gives_the_same_pairs_every_call():
    assert data.load_pairs("tuxpaint", n=7)[1] == data.load_pairs("tuxpaint", n=7, seed=0)[1]


def test_skimage_photos_are_offline_rgb_arrays():
    photos = data.skimage_photos()
    assert len(photos) == 10 and all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos)


def test_cifar10_checks_its_own_host_before_downloading(monkeypatch, tmp_path):
    import sys
    import types

    monkeypatch.setenv("PRH_CACHE_DIR", str(tmp_path))
    downloads, checked = [], []
    pixels = np.arange(10 * 32 * 32 * 3, dtype=np.uint8).reshape(10, 32, 32, 3)

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            if not download and not downloads:
                raise RuntimeError("Dataset not found or corrupted.")
            downloads.append(download)
            self.data = pixels

    monkeypatch.setitem(sys.modules, "torchvision.datasets", types.SimpleNamespace(CIFAR10=FakeCIFAR10))

    def refuse(timeout=5.0, hosts=None):
        checked.append(hosts)
        raise RuntimeError("internet")

    monkeypatch.setattr(config, "check_network", refuse)
    with pytest.raises(RuntimeError, match="internet"):
        data.cifar10_images(n=3)
    assert checked == [data.CIFAR10_HOSTS] and downloads == []
    monkeypatch.setattr(config, "check_network", lambda timeout=5.0, hosts=None: checked.append(hosts))
    imgs = data.cifar10_images(n=3, seed=1)
    assert downloads == [True] and len(imgs) == 3
    np.testing.assert_array_equal(np.stack(imgs), pixels[data._subset_indices(10, 3, 1)])
    assert len(data.cifar10_images(n=3, seed=1)) == 3 and len(checked) == 2  # downloaded: no second check
