"""Tests for prhlib.world: determinism, value ranges, captions that name exactly their scene, Z."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prhlib import world

SIZE_WORD = {w: b for b, words in world.SIZE_WORDS.items() for w in words}


def _caption_facts(caption: str) -> dict:
    """What a caption states, read with nothing but the world's word lists."""
    toks = world.tokenize(caption)
    return {
        "shapes": [t for t in toks if t in world.SHAPES],
        "colors": [t for t in toks if t in world.COLORS],
        "sizes": [SIZE_WORD[t] for t in toks if t in SIZE_WORD],
        "h": [t for t in toks if t in ("left", "right")],
        "v": [t for t in toks if t in ("top", "bottom")],
        "centre": [t for t in toks if t in ("centre", "middle")],
        "generic": [t for t in toks if t in world.GENERIC_NOUNS],
    }


def test_same_seed_same_sample_and_different_seed_differs():
    a, b, c = world.sample(40, seed=3), world.sample(40, seed=3), world.sample(40, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.z, b.z)
    assert a.captions == b.captions and a.scenes == b.scenes
    assert a.scenes != c.scenes
    assert not np.array_equal(a.images, c.images)


def test_shapes_dtypes_and_ranges():
    s = world.sample(50, seed=0, image_size=40)
    assert s.images.shape == (50, 40, 40, 3) and s.images.dtype == np.uint8
    assert s.z.shape == (50, len(world.latent_names())) and np.all(np.isfinite(s.z))
    assert len(s.captions) == len(s.scenes) == len(s) == 50
    for sc in s.scenes:
        (o,) = sc.objects
        assert world.SIZE_RANGE[0] <= o.size <= world.SIZE_RANGE[1]
        assert o.size / 2 <= o.x <= 1 - o.size / 2 and o.size / 2 <= o.y <= 1 - o.size / 2
    # images are not blank and use a real range of values
    assert s.images.std() > 20 and s.images.min() < 60 and s.images.max() > 200


def test_text_options_keep_scenes_and_images():
    a = world.sample(30, seed=1)
    b = world.sample(30, seed=1, text_drop=("color",))
    assert a.scenes == b.scenes
    np.testing.assert_array_equal(a.images, b.images)
    assert all(not _caption_facts(c)["colors"] for c in b.captions)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), max_objects=st.integers(1, 3))
def test_captions_name_exactly_the_attributes_of_their_scene(seed, max_objects):
    s = world.sample(12, seed=seed, max_objects=max_objects, image_size=16)
    for sc, cap in zip(s.scenes, s.captions):
        f = _caption_facts(cap)
        assert f["shapes"] == [o.shape for o in sc.objects], cap
        assert f["colors"] == [o.color for o in sc.objects], cap
        assert f["sizes"] == [o.size_bin for o in sc.objects], cap
        assert f["h"] == [o.x_bin for o in sc.objects if o.x_bin != "middle"], cap
        assert f["v"] == [o.y_bin for o in sc.objects if o.y_bin != "middle"], cap
        n_centre = sum(o.x_bin == "middle" and o.y_bin == "middle" for o in sc.objects)
        assert len(f["centre"]) == n_centre, cap
        assert not f["generic"]


@pytest.mark.parametrize("drop", ["shape", "color", "size", "position"])
def test_text_drop_removes_exactly_that_attribute(drop):
    s = world.sample(60, seed=7, text_drop=(drop,))
    for sc, cap in zip(s.scenes, s.captions):
        f = _caption_facts(cap)
        o = sc.objects[0]
        assert (f["shapes"] == []) == (drop == "shape") and (f["shapes"] in ([], [o.shape]))
        assert bool(f["generic"]) == (drop == "shape")
        assert (f["colors"] == []) == (drop == "color")
        assert (f["sizes"] == []) == (drop == "size")
        if drop == "position":
            assert not (f["h"] or f["v"] or f["centre"])


def test_image_drop_color_makes_colour_invisible():
    s = world.sample(40, seed=2, image_drop=("color",), noise=0.0, texture=0.0, background=(0, 0))
    # objects are white on black: every pixel is grey (R = G = B)
    img = s.images.astype(int)
    assert np.abs(img[..., 0] - img[..., 1]).max() <= 1 and np.abs(img[..., 1] - img[..., 2]).max() <= 1
    assert img.max() == 255


def test_rendered_colour_matches_the_palette():
    s = world.sample(20, seed=5, noise=0.0, texture=0.0, rotation=0.0)
    for img, sc in zip(s.images, s.scenes):
        o = sc.objects[0]
        cy, cx = int(o.y * 32), int(o.x * 32)
        np.testing.assert_allclose(img[cy, cx], world.PALETTE[o.color], atol=2)


def test_every_caption_word_is_in_the_vocabulary():
    vocab = set(world.vocabulary())
    s = world.sample(200, seed=11, max_objects=3, text_drop=("size",), image_size=16)
    s2 = world.sample(200, seed=12, text_drop=("shape",), image_size=16)
    for cap in s.captions + s2.captions:
        assert set(world.tokenize(cap)) <= vocab, cap


def test_describe_gives_new_paraphrases_of_the_same_scenes():
    s = world.sample(50, seed=0)
    again = world.describe(s.scenes, seed=99)
    assert again != s.captions
    for sc, cap in zip(s.scenes, again):
        assert _caption_facts(cap)["colors"] == [sc.objects[0].color]
    plain = world.describe(s.scenes, paraphrase=False)
    assert plain == world.describe(s.scenes, seed=5, paraphrase=False)


def test_latent_groups_are_balanced_and_labels_match():
    s = world.sample(3000, seed=0, image_size=16)
    names = world.latent_names()
    groups = {"shape": [n for n in names if n.startswith("shape=")], "color": ["L*", "a*", "b*"],
              "size": ["size"], "x": ["x"], "y": ["y"]}
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(s), 4000), rng.integers(0, len(s), 4000)
    for g, cols in groups.items():
        idx = [names.index(c) for c in cols]
        msd = ((s.z[i][:, idx] - s.z[j][:, idx]) ** 2).sum(1).mean()
        assert 0.85 < msd < 1.15, (g, msd)  # each attribute weighs about the same in distances
    assert set(s.labels("color")) == set(range(len(world.COLORS)))
    np.testing.assert_array_equal(s.labels("shape"), s.z[:, :4].argmax(1))


def test_multi_object_latent_slots():
    s = world.sample(30, seed=3, max_objects=3, min_objects=2, image_size=16)
    assert s.z.shape == (30, len(world.latent_names(3)))
    present = s.z[:, [world.latent_names(3).index(f"obj{j}:present") for j in range(3)]]
    assert np.all(present.sum(1) == [len(sc.objects) for sc in s.scenes])
    assert all([o.x for o in sc.objects] == sorted(o.x for o in sc.objects) for sc in s.scenes)
    assert set(s.labels("count")) <= {1, 2}


def test_latent_kernel():
    z = world.sample(64, seed=0, image_size=16).z
    k = world.latent_kernel(z)
    assert k.shape == (64, 64) and np.allclose(k, k.T)
    assert np.linalg.eigvalsh(k).min() > -1e-8  # positive semi-definite
    r = world.latent_kernel(z, kind="rbf")
    assert np.allclose(np.diag(r), 1.0) and r.min() > 0
    with pytest.raises(ValueError, match="NaN"):
        world.latent_kernel(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        world.latent_kernel(np.ones(3))
    with pytest.raises(ValueError, match="kind"):
        world.latent_kernel(z, kind="cosine")
    p = world.platonic_features(z)
    assert p.shape == (64, 1, z.shape[1]) and np.allclose(p.mean(axis=0), 0, atol=1e-5)
    with pytest.raises(ValueError, match="2-D"):
        world.platonic_features(z[None])


def test_z_against_itself_scores_one_and_noise_scores_chance():
    metrics = pytest.importorskip("prhlib.metrics")
    z = world.sample(400, seed=1, image_size=16).z
    assert metrics.mutual_knn(z, z, k=10) == pytest.approx(1.0)
    assert metrics.cka(z, z) == pytest.approx(1.0, abs=1e-5)
    noise = np.random.default_rng(0).normal(size=(400, 32))
    score = metrics.mutual_knn(z, noise, k=10)
    chance = metrics.chance("mutual_knn", n=400, k=10)
    assert abs(score - chance) < 0.02, (score, chance)
    # a model that sees the scene through a random rotation plus a little noise is near the top
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(z.shape[1], z.shape[1])))[0]
    seen = z @ q + 0.01 * np.random.default_rng(2).normal(size=z.shape)
    assert metrics.mutual_knn(z, seen, k=10) > 0.8
    # the chapter's protocol: best layer pair against the centred latent
    zl = world.platonic_features(z)
    assert metrics.best_layer_pair(zl, zl, k=10)[0] == pytest.approx(1.0)
    assert metrics.best_layer_pair(noise[:, None, :], zl, k=10)[0] < chance + 0.02


def test_bad_options_raise():
    with pytest.raises(ValueError, match="unknown world option"):
        world.sample(3, colour=True)
    with pytest.raises(ValueError, match="text_drop"):
        world.sample(3, text_drop=("smell",))
    with pytest.raises(ValueError, match="n must be between 1"):
        world.sample(0)
    with pytest.raises(ValueError, match="n must"):
        world.sample(True)
    for seed in (1.5, "1", True, -1):
        with pytest.raises(ValueError, match="seed"):
            world.sample(3, seed=seed)
    with pytest.raises(ValueError, match="image_size"):
        world.sample(3, image_size=8)
    with pytest.raises(ValueError, match="max_objects"):
        world.sample(3, max_objects=5)
    with pytest.raises(ValueError, match="noise"):
        world.sample(3, noise=float("nan"))
    with pytest.raises(ValueError, match="unknown task"):
        world.n_classes("smell")
