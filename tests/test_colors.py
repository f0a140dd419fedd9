"""Tests for prhlib.colors: CIELAB, PMI, MDS, Kabsch--Umeyama, RSA with its null."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.transform import Rotation

from prhlib import colors as C


# --- CIELAB ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "rgb, lab",
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),  # white: the reference white
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),  # black
        ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),  # sRGB red (Lindbloom's calculator, D65)
        ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),  # sRGB green
        ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),  # sRGB blue
    ],
)
def test_to_lab_matches_published_values(rgb, lab):
    np.testing.assert_allclose(C.to_lab(rgb), lab, atol=0.01)


def test_to_lab_keeps_shape_and_rejects_bad_input():
    assert C.to_lab(np.zeros((4, 5, 3))).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        C.to_lab([255, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        C.to_lab([np.nan, 0, 0])
    with pytest.raises(ValueError, match="length 3"):
        C.to_lab([0.5, 0.5])


def test_ciede2000_matches_sharma_reference_pair():
    # Sharma, Wu & Dalal (2005), test pair 1: dE00 = 2.0425.
    d = C.delta_e([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], method="ciede2000")
    assert d == pytest.approx(2.0425, abs=1e-4)


def test_lab_distances_is_euclidean_in_lab():
    lab = C.named_colors("basic").lab
    d = C.lab_distances(lab)
    assert d.shape == (11, 11)
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_allclose(d[0, 1], np.linalg.norm(lab[0] - lab[1]))
    with pytest.raises(ValueError, match="unknown colour difference"):
        C.lab_distances(lab, method="cie94")


def test_named_color_sets():
    assert len(C.named_colors("xkcd")) == 949
    assert len(C.named_colors("css4")) == 148
    lb = C.named_colors("lindsey_brown")
    assert lb.names == C.LINDSEY_BROWN_20 and len(set(lb.names)) == 20
    assert lb.subset(["red", "teal"]).hex == [lb.hex[2], lb.hex[lb.names.index("teal")]]
    with pytest.raises(ValueError, match="not in"):
        lb.subset(["chartreuse"])
    with pytest.raises(ValueError, match="unknown colour set"):
        C.named_colors("pantone")


def test_munsell_chips_are_in_gamut_and_ordered_by_value():
    m = C.munsell_colors("real")
    assert 1000 < len(m) < 2734
    assert m.rgb.min() >= 0 and m.rgb.max() <= 1
    value = np.array([float(n.split()[1].split("/")[0]) for n in m.names])
    # Munsell value is a lightness scale: it must rank chips like CIELAB L*.
    assert stats.spearmanr(value, m.lab[:, 0]).statistic > 0.98


def test_warm_cool_labels():
    lab = C.to_lab([[0.9, 0.1, 0.1], [1.0, 0.6, 0.0], [0.1, 0.2, 0.9], [0.1, 0.7, 0.2], [0.5, 0.5, 0.5]])
    assert list(C.warm_cool(lab)) == ["warm", "warm", "cool", "cool", "neutral"]


# --- pixel pairs, counts, PMI -----------------------------------------------------------------------

def _position_image(h=40, w=50):
    """R channel = column, G channel = row: each pixel's colour tells where it is."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x, y, np.zeros_like(x)], axis=2).astype(np.uint8)


def test_pixel_pairs_lie_within_the_radius_and_are_seeded():
    a, b = C.sample_pixel_pairs([_position_image()], n_pairs=5000, radius=3, seed=1)
    dx = b[:, 0].astype(int) - a[:, 0]
    dy = b[:, 1].astype(int) - a[:, 1]
    dist2 = dx ** 2 + dy ** 2
    assert dist2.min() >= 1 and dist2.max() <= 9
    assert len(np.unique(np.stack([dy, dx], 1), axis=0)) == len(C.disc_offsets(3)) == 28
    a2, b2 = C.sample_pixel_pairs([_position_image()], n_pairs=5000, radius=3, seed=1)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)


def test_pixel_pairs_skip_transparent_pixels():
    img = np.zeros((30, 30, 4), np.uint8)
    img[..., 0] = 200
    img[:, :15, 3] = 255  # left half opaque red-ish; right half transparent but green
    img[:, 15:, 1] = 255
    a, b = C.sample_pixel_pairs([img], n_pairs=2000, radius=4)
    assert np.all(a[:, 1] == 0) and np.all(b[:, 1] == 0)


def test_pixel_pairs_fail_loudly_on_impossible_input():
    with pytest.raises(ValueError, match="too small"):
        C.sample_pixel_pairs([np.zeros((1, 1, 3), np.uint8)], n_pairs=10, radius=2)
    with pytest.raises(ValueError, match="alpha"):
        C.sample_pixel_pairs([np.zeros((5, 5, 4), np.uint8)], n_pairs=10)
    with pytest.raises(ValueError, match="uint8"):
        C.sample_pixel_pairs([np.zeros((5, 5, 3))], n_pairs=10)


def test_quantize_bins_their_own_centres():
    centres = C.bin_centers(4)
    idx = C.quantize(np.round(centres * 255).astype(np.uint8), levels=4)
    np.testing.assert_array_equal(idx, np.arange(64))
    with pytest.raises(ValueError, match="uint8"):
        C.quantize(centres, levels=4)


def test_pmi_of_independent_colours_is_about_zero():
    rng = np.random.default_rng(0)
    # Every pixel an independent draw from 8 colours with unequal frequencies: no spatial structure.
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                        [255, 255, 0], [255, 0, 255], [0, 255, 255], [255, 255, 255]], np.uint8)
    probs = np.array([0.3, 0.2, 0.1, 0.1, 0.1, 0.08, 0.07, 0.05])
    images = [palette[rng.choice(8, size=(160, 160), p=probs)] for _ in range(8)]
    res = C.image_cooccurrence(images, levels=2, n_pairs=200_000, n_colors=8, smoothing=0.0)
    assert res.pmi.shape == (8, 8)
    # "About 0" means within sampling noise: a cell expected to hold E counts has a PMI standard
    # error of about 1/sqrt(E); allow 4 standard errors, and ask the typical cell to be much closer.
    expected = 2 * 200_000 * np.outer(res.frequency, res.frequency)
    assert np.all(np.abs(res.pmi) < 4 / np.sqrt(expected))
    assert np.abs(res.pmi).mean() < 0.02
    # frequencies are the shares of pair ends with each colour: the palette's probabilities
    np.testing.assert_allclose(np.sort(res.frequency), np.sort(probs), atol=0.01)


def test_pmi_is_positive_for_colours_that_stick_together():
    # Two-colour images made of large blocks: neighbours usually share a colour.
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 32:] = 255
    res = C.image_cooccurrence([img], levels=2, n_pairs=20_000, n_colors=2, smoothing=0.0)
    assert np.all(np.diag(res.pmi) > 0.5) and res.pmi[0, 1] < -1.0
    d = res.dissimilarity
    assert d[0, 1] > 0 and np.all(np.diag(d) == 0)


def test_image_pmi_is_the_one_estimator_of_prhlib_pmi():
    from prhlib import pmi

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(30, 30, 3)).astype(np.uint8)
    img[:, :15] = (200, 30, 30)
    res = C.image_cooccurrence([img], levels=2, n_pairs=5_000, n_colors=8, smoothing=0.5, seed=1)
    np.testing.assert_array_equal(res.pmi, pmi.from_counts(res.counts, smoothing=0.5))
    # the formula by hand: log p(u, v) - log p(u) - log p(v) on the smoothed table
    table = res.counts + 0.5
    p = table / table.sum()
    np.testing.assert_allclose(res.pmi, np.log(p / np.outer(p.sum(1), p.sum(0))), rtol=1e-12)
    assert not hasattr(C, "pmi"), "colors must not keep a second PMI estimator"


def test_cooccurrence_is_symmetric_and_counts_both_orders():
    c = C.cooccurrence([0, 0, 1], [1, 2, 1], n_bins=3)
    np.testing.assert_array_equal(c, c.T)
    assert c.sum() == 6 and c[1, 1] == 2 and c[0, 1] == 1
    with pytest.raises(ValueError, match="bin indices"):
        C.cooccurrence([0], [5], n_bins=3)


# --- MDS and Kabsch--Umeyama ----------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), reflect=st.booleans())
def test_kabsch_umeyama_recovers_a_known_similarity_transform(seed, reflect):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(30, 3))
    rot = Rotation.random(random_state=seed).as_matrix()
    if reflect:
        rot = rot @ np.diag([1.0, 1.0, -1.0])
    scale, shift = rng.uniform(0.2, 5.0), rng.normal(scale=10, size=3)
    dst = scale * src @ rot.T + shift
    aligned, tf = C.kabsch_umeyama(src, dst, return_transform=True)
    np.testing.assert_allclose(aligned, dst, atol=1e-9)
    np.testing.assert_allclose(tf.rotation, rot, atol=1e-9)
    assert tf.scale == pytest.approx(scale, rel=1e-10)
    np.testing.assert_allclose(tf.translation, shift, atol=1e-9)
    assert tf.reflection == reflect


def test_kabsch_umeyama_without_reflection_cannot_undo_a_mirror():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    dst = src * np.array([1.0, 1.0, -1.0])
    _, tf = C.kabsch_umeyama(src, dst, reflection=False, return_transform=True)
    assert np.linalg.det(tf.rotation) == pytest.approx(1.0)
    assert not np.allclose(tf.apply(src), dst, atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        C.kabsch_umeyama(src, dst[:5])
    with pytest.raises(ValueError, match="NaN"):
        C.kabsch_umeyama(np.full((3, 3), np.nan), dst[:3])


def test_mds_recovers_a_3d_point_set_up_to_rigid_motion():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 3)) * np.array([3.0, 2.0, 1.0])
    d = C.row_distances(x)
    res = C.mds(d, n_components=3, n_starts=4, seed=0)
    assert res.stress < 1e-3
    aligned, tf = C.kabsch_umeyama(res.embedding, x, return_transform=True)
    assert tf.scale == pytest.approx(1.0, abs=1e-3)  # no rescaling needed: rigid motion only
    assert np.abs(aligned - x).max() < 1e-2
    assert len(res.start_stresses) == 4 and res.stress == res.start_stresses.min()


def test_classical_mds_is_exact_on_euclidean_distances():
    x = np.random.default_rng(1).normal(size=(12, 3))
    y = C.classical_mds(C.row_distances(x), 3)
    np.testing.assert_allclose(C.row_distances(y), C.row_distances(x), atol=1e-9)


def test_dissimilarity_validation():
    with pytest.raises(ValueError, match="symmetric"):
        C.mds(np.array([[0, 1, 2], [1, 0, 1], [3, 1, 0]], float))
    with pytest.raises(ValueError, match="zero diagonal"):
        C.classical_mds(np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        C.rsa_test(np.full((3, 3), np.nan), np.zeros((3, 3)))


# --- RSA ------------------------------------------------------------------------------------------

def test_rsa_of_a_matrix_with_itself_is_one_and_significant():
    lab = C.named_colors("lindsey_brown").lab
    d = C.lab_distances(lab)
    res = C.rsa_test(d, np.sqrt(d), permutations=199)  # a monotone transform: same ranks
    assert res.score == pytest.approx(1.0)
    assert res.p_value == pytest.approx(1 / 200)
    assert res.threshold < 0.5


def test_rsa_of_unrelated_matrices_is_not_significant():
    rng = np.random.default_rng(0)
    a = C.row_distances(rng.normal(size=(20, 3)))
    b = C.row_distances(rng.normal(size=(20, 3)))
    for method in ("spearman", "kendall"):
        res = C.rsa_test(a, b, method=method, permutations=199, seed=1)
        assert res.p_value > 0.05
        assert abs(res.null_mean) < 0.05


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_fast_spearman_null_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = C.row_distances(rng.normal(size=(9, 2)))
    b = np.round(C.row_distances(rng.normal(size=(9, 2))), 1)  # ties on purpose
    res = C.rsa_test(a, b, permutations=5, seed=seed)
    iu = np.triu_indices(9, 1)
    assert res.score == pytest.approx(stats.spearmanr(a[iu], b[iu]).statistic, abs=1e-12)
    perm_rng = np.random.default_rng(seed)
    for k in range(5):
        p = perm_rng.permutation(9)
        expected = stats.spearmanr(a[iu], b[np.ix_(p, p)][iu]).statistic
        assert res.null[k] == pytest.approx(expected, abs=1e-12)


def test_rsa_kendall_matches_scipy_and_is_deterministic():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(15, 3))
    a = C.row_distances(x)
    b = C.row_distances(x + 0.5 * rng.normal(size=x.shape))
    r1 = C.rsa_test(a, b, method="kendall", permutations=99, seed=2)
    r2 = C.rsa_test(a, b, method="kendall", permutations=99, seed=2)
    iu = np.triu_indices(15, 1)
    assert r1.score == pytest.approx(stats.kendalltau(a[iu], b[iu]).statistic)
    np.testing.assert_array_equal(r1.null, r2.null)
    assert r1.p_value == pytest.approx(0.01)
    with pytest.raises(ValueError, match="method"):
        C.rsa_test(a, b, method="pearson")
    with pytest.raises(ValueError, match="different numbers"):
        C.rsa_test(a, b[:5, :5])


# --- language templates ---------------------------------------------------------------------------

def test_templates_are_word_major_and_average_back():
    s = C.template_sentences(["red", "teal"])
    assert s[:3] == ["The color red.", "This color is red.", "The color of this thing is red."]
    assert s[3] == "The color teal."
    feats = np.arange(6 * 2 * 4, dtype=float).reshape(6, 2, 4)
    avg = C.average_templates(feats)
    assert avg.shape == (2, 2, 4)
    np.testing.assert_allclose(avg[1], feats[3:6].mean(0))
    with pytest.raises(ValueError, match="multiple"):
        C.average_templates(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        C.template_sentences(["red", ""])


def test_word_embeddings_average_templates_of_a_static_model():
    from prhlib import features

    words = ["red", "teal", "maroon"]
    emb = C.word_embeddings("glove50", words)
    assert emb.shape == (3, 50)
    direct = features.extract("glove50", C.template_sentences(words), layers="all")[:, 0]
    np.testing.assert_allclose(emb, direct.reshape(3, 3, 50).mean(1), rtol=1e-6)


def test_paper_layers_and_full_profile_models():
    assert C.paper_layers(7) == [3, 4, 5, 6] and C.paper_layers(1) == [0]
    with pytest.raises(ValueError, match="full profile"):
        C.language_encoder("roberta_large")  # kept for chapter 6: it is models.get
    from prhlib import models

    assert C.language_encoder is models.get
    assert models.REGISTRY["roberta_large"].cache_id == "FacebookAI/roberta-large"
    assert models.REGISTRY["simcse_roberta_large"].profile == "full"


def test_rsa_test_agrees_with_metrics_rsa_on_features():
    metrics = pytest.importorskip("prhlib.metrics")
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 7))
    for method in ("spearman", "kendall"):
        ours = C.rsa_test(C.row_distances(x), C.row_distances(y), method=method, permutations=9).score
        assert ours == pytest.approx(metrics.rsa(x, y, method=method), abs=1e-6)


# --- palette co-occurrence, stamps, warm/cool separation -------------------------------------------

def test_nearest_palette_and_palette_cooccurrence():
    pal = C.named_colors("basic")
    own = np.round(pal.rgb * 255).astype(np.uint8)
    for space in ("rgb", "lab"):
        np.testing.assert_array_equal(C.nearest_palette(own, pal, space=space), np.arange(11))
    with pytest.raises(ValueError, match="quantisation space"):
        C.nearest_palette(own, pal, space="hsv")
    # Image: left half xkcd red, right half xkcd blue; a few pixels off-palette but near red.
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = own[pal.names.index("red")]
    img[:, 20:] = own[pal.names.index("blue")]
    img[0, 0] = (230, 10, 10)
    res = C.palette_cooccurrence([img], pal, n_pairs=20_000, smoothing=1.0)
    red, blue = pal.names.index("red"), pal.names.index("blue")
    assert res.frequency[red] == pytest.approx(0.5, abs=0.03) and res.frequency[blue] == pytest.approx(0.5, abs=0.03)
    assert res.frequency.sum() == pytest.approx(1.0)
    assert res.pmi[red, red] > 0 > res.pmi[red, blue]
    assert res.dissimilarity.shape == (11, 11)
    assert res.params["space"] == "rgb"  # the paper's choice is the default
    with pytest.raises(ValueError, match="quantisation space"):
        C.palette_cooccurrence([img], pal, n_pairs=100, space="LAB ")


def test_palette_quantisation_space_decides_where_nearest_is_measured():
    # Two palette colours and one pixel colour that is nearer to the first in sRGB but nearer to the
    # second in CIELAB: the two spaces must disagree on it, each by its own distance.
    pal = C.named_colors("css4").subset(["navy", "purple"])
    pixel = np.array([[22, 86, 34]], dtype=np.uint8)
    rgb_d = ((pixel / 255.0 - pal.rgb) ** 2).sum(1)
    lab_d = ((C.to_lab(pixel / 255.0) - pal.lab) ** 2).sum(1)
    assert C.nearest_palette(pixel, pal, space="rgb")[0] == rgb_d.argmin()
    assert C.nearest_palette(pixel, pal, space="lab")[0] == lab_d.argmin()
    assert rgb_d.argmin() != lab_d.argmin(), "pick a pixel on which the spaces disagree"
    img = np.tile(pixel, (10, 10, 1))
    img[:, :5] = np.round(pal.rgb[0] * 255)
    by_rgb = C.palette_cooccurrence([img], pal, n_pairs=2_000, space="rgb")
    by_lab = C.palette_cooccurrence([img], pal, n_pairs=2_000, space="lab")
    assert by_rgb.frequency[rgb_d.argmin()] > 0.9 and by_lab.frequency[lab_d.argmin()] > 0.4
    assert not np.array_equal(by_rgb.counts, by_lab.counts)


def test_tuxpaint_stamps_keep_their_alpha_channel():
    from prhlib import data

    assert C.tuxpaint_stamps is data.tuxpaint_stamps and C.skimage_photos is data.skimage_photos
    stamps = C.tuxpaint_stamps(n=3, seed=0)
    assert len(stamps) == 3
    for s in stamps:
        assert s.dtype == np.uint8 and s.ndim == 3 and s.shape[2] == 4
    assert any((s[..., 3] == 0).any() for s in stamps)  # transparent background present
    with pytest.raises(ValueError, match="out of range"):
        C.tuxpaint_stamps(n=0)


def test_group_separation_detects_separated_groups_only():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(size=(8, 3)), rng.normal(size=(8, 3)) + 6.0])
    labels = np.array(["warm"] * 8 + ["cool"] * 8)
    d = C.row_distances(pts)
    res = C.group_separation(d, labels, permutations=199)
    assert res.score > 2 and res.p_value == pytest.approx(1 / 200) and res.sizes == (8, 8)
    mixed = C.group_separation(d, rng.permutation(labels), permutations=199, seed=1)
    assert mixed.p_value > 0.05
    with pytest.raises(ValueError, match="at least two"):
        C.group_separation(d, np.array(["warm"] + ["cool"] * 15))
    with pytest.raises(ValueError, match="one label per row"):
        C.group_separation(d, labels[:5])


# --- figure helpers -------------------------------------------------------------------------------

def test_scatter_colors_and_3d_view():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prhlib import plotting

    assert C.scatter_colors is plotting.scatter_colors and C.color_space_3d is plotting.color_space_3d
    lb = C.named_colors("lindsey_brown")
    fig, ax = plt.subplots()
    C.scatter_colors(ax, lb.lab[:, 1:], lb.hex, lb.names)
    assert len(ax.collections) == 1 and len(ax.texts) == 20
    with pytest.raises(ValueError, match="n x 2"):
        C.scatter_colors(ax, lb.lab, lb.hex)
    plt.close(fig)
    fig3d = C.color_space_3d({"CIELAB": (lb.lab, lb.hex, lb.names), "copy": (lb.lab + 1, lb.hex, lb.names)})
    assert [t.name for t in fig3d.data] == ["CIELAB", "copy"]
    np.testing.assert_allclose(fig3d.data[0].z, lb.lab[:, 0])  # lightness is the vertical axis
    assert fig3d.data[0].marker.symbol != fig3d.data[1].marker.symbol


def test_plotly_html_is_self_contained_and_sized():
    from prhlib import plotting

    lb = C.named_colors("basic")
    html = plotting.plotly_html(C.color_space_3d({"CIELAB": (lb.lab, lb.hex, lb.names)}), height=480,
                                div_id="test-div").data
    assert 'id="test-div"' in html and "480px" in html
    assert "cdn.plot.ly/plotly-" in html and "require(" not in html


def test_moved_names_and_unknown_attributes():
    assert C.euclidean_distances is C.row_distances  # chapter 6's name, kept as an alias
    assert not hasattr(C, "nearest_bins")
    with pytest.raises(AttributeError, match="no attribute"):
        C.no_such_function


def test_colour_tests_use_the_exact_permutation_rule_of_metrics():
    # alpha = 0.18, K = 999: (1 - 0.18) * 1000 is 820 exactly, but 820.0000000000001 in floats, so the old
    # float rule took rank 821; the exact rule of metrics takes 820.
    from fractions import Fraction
    import math

    from prhlib import metrics

    rng = np.random.default_rng(0)
    d_a = C.row_distances(rng.normal(size=(10, 3)))
    d_b = C.row_distances(rng.normal(size=(10, 3)))
    labels = np.array(["warm"] * 5 + ["cool"] * 5)
    for alpha, k in ((0.18, 999), (0.05, 999), (0.1, 199), (0.07, 99)):
        res = C.rsa_test(d_a, d_b, permutations=k, alpha=alpha, seed=1)
        pool = np.sort(np.append(res.null, res.score))
        exact_rank = math.ceil((1 - Fraction(str(alpha))) * (k + 1))
        assert res.threshold == pool[exact_rank - 1]
        assert res.threshold == metrics.permutation_threshold(res.null, alpha, observed=res.score)
        assert res.p_value == metrics.permutation_p_value(res.score, res.null)
        sep = C.group_separation(d_a, labels, permutations=k, alpha=alpha, seed=1)
        assert sep.threshold == metrics.permutation_threshold(sep.null, alpha, observed=sep.score)
        assert sep.p_value == metrics.permutation_p_value(sep.score, sep.null)
    float_rank = math.ceil((1 - 0.18) * 1000)
    assert float_rank != math.ceil((1 - Fraction("0.18")) * 1000), "the case that motivated the exact rule"


@pytest.mark.parametrize("kwargs", [dict(permutations=0), dict(permutations=True), dict(permutations=10.0),
                                    dict(alpha=0), dict(alpha=1.0), dict(seed=None), dict(seed=-1)])
def test_colour_tests_reject_bad_options(kwargs):
    d = C.row_distances(np.random.default_rng(0).normal(size=(6, 2)))
    labels = np.array(["warm"] * 3 + ["cool"] * 3)
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        C.rsa_test(d, d, **kwargs)
    with pytest.raises(ValueError, match=name):
        C.group_separation(d, labels, **kwargs)
