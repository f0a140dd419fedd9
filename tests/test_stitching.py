"""Tests for prhlib.stitching: cuts, stitch layers, training, least squares, relative representations."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prhlib import stitching as S

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------
# A tiny task and a tiny CNN, trained once per test session
# ----------------------------------------------------------------------------------------------
def quadrant_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 12, 12) noisy images; the label (0..3) is the quadrant holding a bright 4x4 square."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 3, 12, 12, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    jitter = torch.randint(0, 3, (n, 2), generator=g)
    for i in range(n):
        r0 = 6 * (int(y[i]) // 2) + int(jitter[i, 0])
        c0 = 6 * (int(y[i]) % 2) + int(jitter[i, 1])
        x[i, :, r0:r0 + 4, c0:c0 + 4] += 1.5
    return x, y


def tiny_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("stem", nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())),
        ("block1", nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())),
        ("block2", nn.Sequential(nn.Conv2d(12, 16, 3, stride=2, padding=1), nn.ReLU())),
        ("pool", nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())),
        ("fc", nn.Sequential(nn.Linear(64, 32), nn.ReLU())),
        ("head", nn.Linear(32, 4)),
    ]))


def train_net(model: nn.Module, x, y, epochs: int = 25, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def task():
    x_train, y_train = quadrant_images(512, seed=1)
    x_test, y_test = quadrant_images(256, seed=2)
    net_a = train_net(tiny_cnn(10), x_train, y_train, seed=0)
    net_b = train_net(tiny_cnn(20), x_train, y_train, seed=1)
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, a=net_a, b=net_b)


CUTS = ["stem", "block1", "block2", "pool", "fc"]


# ----------------------------------------------------------------------------------------------
# Cutting
# ----------------------------------------------------------------------------------------------
def test_tiny_networks_learn_the_task(task):
    for net in (task["a"], task["b"]):
        assert S.accuracy(net, task["x_test"], task["y_test"]) >= 0.95


@pytest.mark.parametrize("cut", CUTS)
def test_split_composes_back_to_the_model(task, cut):
    bottom, top = S.split(task["a"], cut)
    x = task["x_test"][:16]
    with torch.no_grad():
        assert torch.allclose(top(bottom(x)), task["a"](x), atol=1e-6)
    names = S.layer_names(task["a"])
    assert [n for n, _ in bottom.named_children()] == names[: names.index(cut) + 1]


def test_cutting_never_changes_the_train_eval_mode_of_the_model(task):
    net = task["a"]
    assert not any(m.training for m in net.modules())
    S.stitch(net, task["b"], "stem", example=task["x_test"][:4])
    S.feature_shape(S.split(net, "block1")[0], task["x_test"][:2])
    assert not any(m.training for m in net.modules())
    net.train()
    try:
        S.feature_shape(S.split(net, "block1")[0], task["x_test"][:2])
        assert all(m.training for m in net.modules())
    finally:
        net.eval()


def test_activations_match_the_bottoms_and_feed_an_identity_bottom_stitch(task):
    x = task["x_test"][:40]
    acts = S.activations(task["a"], x, ["block1", "pool"], batch_size=16)
    assert set(acts) == {"block1", "pool"}
    with torch.no_grad():
        for cut in ("block1", "pool"):
            assert torch.allclose(acts[cut], S.split(task["a"], cut)[0](x), atol=1e-6)
    # the same stitch evaluated on cached activations (identity bottom) or on images
    model = S.stitch(task["a"], task["b"], "block1", example=x[:4])
    S.fit_least_squares(model, task["x_train"], S.split(task["b"], "block1")[0])
    cached = S.StitchedModel(nn.Identity(), model.stitch, S.split(task["b"], "block1")[1])
    assert torch.allclose(S.predict(cached, acts["block1"]), S.predict(model, x), atol=1e-5)
    with pytest.raises(ValueError, match="unknown layer"):
        S.activations(task["a"], x, ["block7"])


def test_activations_do_not_depend_on_the_batch_size(task):
    x = task["x_test"][:37]  # not a multiple of any batch size below
    ref = S.activations(task["a"], x, ["stem", "pool"], batch_size=len(x))
    for batch_size in (1, 5, 8, 64):
        acts = S.activations(task["a"], x, ["stem", "pool"], batch_size=batch_size)
        for cut in ref:
            assert torch.allclose(acts[cut], ref[cut], atol=1e-6)


def test_split_errors_name_the_problem(task):
    with pytest.raises(ValueError, match="no layer named 'block9'.*stem"):
        S.split(task["a"], "block9")
    with pytest.raises(ValueError, match="last layer 'head'"):
        S.split(task["a"], "head")
    with pytest.raises(ValueError, match="cannot cut a Linear"):
        S.as_sequential(nn.Linear(3, 3))


def test_efficientnet_sequential_view_is_exact():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    seq = S.as_sequential(model)
    names = S.layer_names(model)
    assert names[0] == "stem" and names[-3:] == ["head", "pool", "classifier"]
    assert names[1:-3] == [f"stage{i + 1}" for i in range(len(model.blocks))]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(seq(x), model(x), atol=1e-5)

    class Wrapper:  # like a prhlib.models encoder: the torch module is .module
        module = model

    assert S.layer_names(Wrapper()) == names
    bottom, _ = S.split(model, "stage6")
    assert S.feature_shape(bottom, x) == (192, 2, 2)


# ----------------------------------------------------------------------------------------------
# Stitch layers and incompatible cuts
# ----------------------------------------------------------------------------------------------
def test_make_stitch_shapes():
    conv = S.make_stitch((8, 5, 5), (12, 5, 5))
    assert isinstance(conv, S.ConvStitch)
    assert conv(torch.randn(3, 8, 5, 5)).shape == (3, 12, 5, 5)
    assert [type(m) for m in conv.children()] == [nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d]
    assert conv.conv.kernel_size == (1, 1)
    lin = S.make_stitch((64,), (32,))
    assert isinstance(lin, S.LinearStitch)
    assert lin(torch.randn(3, 64)).shape == (3, 32)


def test_incompatible_cuts_raise(task):
    with pytest.raises(ValueError, match="spatial sizes differ"):
        S.make_stitch((8, 12, 12), (16, 6, 6))
    with pytest.raises(ValueError, match="feature map .* into a vector"):
        S.make_stitch((8, 12, 12), (64,))
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(d,\)"):
        S.make_stitch((8, 12), (8, 12))
    x = task["x_test"][:4]
    with pytest.raises(ValueError, match="spatial sizes differ"):
        S.stitch(task["a"], task["b"], "block1", "block2", example=x)
    with pytest.raises(ValueError, match="feature map"):
        S.stitch(task["a"], task["b"], "block2", "pool", example=x)
    with pytest.raises(ValueError, match="example="):
        S.stitch(task["a"], task["b"], "block1")
    with pytest.raises(ValueError, match="identity stitch needs equal"):
        S.identity_stitch((8, 12, 12), (12, 12, 12))


def test_stitched_shapes_and_trainable_parameters(task):
    model = S.stitch(task["a"], task["b"], "block1", example=task["x_test"][:4])
    assert model(task["x_test"][:5]).shape == (5, 4)
    assert model.n_trainable() == sum(p.numel() for p in model.stitch.parameters())
    # block1 -> block1: 12 -> 12 channels: BN (2*12) + conv (12*12 + 12) + BN (2*12)
    assert model.n_trainable() == 24 + 156 + 24


def test_identity_self_stitch_is_the_model(task):
    x = task["x_test"][:8]
    shape = S.feature_shape(S.split(task["a"], "block2")[0], x)
    model = S.stitch(task["a"], task["a"], "block2", stitch_layer=S.identity_stitch(shape, shape))
    with torch.no_grad():
        assert torch.allclose(model(x), task["a"](x), rtol=1e-5, atol=1e-5)
    assert S.train_stitch(model, task["x_train"], task["y_train"], epochs=1) == []


# ----------------------------------------------------------------------------------------------
# Training a stitch
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", CUTS)
def test_self_stitch_recovers_99_percent_at_every_cut(task, cut):
    net = task["a"]
    model = S.stitch(net, net, cut, example=task["x_train"][:4])
    S.train_stitch(model, task["x_train"], task["y_train"], epochs=15, lr=1e-2, seed=0)
    res = S.evaluate_stitch(model, net, task["x_test"], task["y_test"])
    assert res.stitched >= 0.99 * res.receiver, (cut, res)
    assert res.penalty == pytest.approx(res.stitched - res.receiver)


def test_training_touches_only_the_stitch(task):
    before_a = {k: v.clone() for k, v in task["a"].state_dict().items()}
    before_b = {k: v.clone() for k, v in task["b"].state_dict().items()}
    model = S.stitch(task["a"], task["b"], "stem", example=task["x_train"][:4])
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("stitch.")}
    stitch_before = {k: v.clone() for k, v in model.stitch.state_dict().items()}
    losses = S.train_stitch(model, task["x_train"], task["y_train"], epochs=3)
    assert len(losses) == 3 and losses[-1] < losses[0]
    for k, v in model.state_dict().items():
        if not k.startswith("stitch."):
            assert torch.equal(v, frozen_before[k]), k
    assert any(not torch.equal(v, stitch_before[k]) for k, v in model.stitch.state_dict().items())
    for net, before in ((task["a"], before_a), (task["b"], before_b)):
        for k, v in net.state_dict().items():
            assert torch.equal(v, before[k]), k
    model.train()
    assert not model.bottom.training and not model.top.training and model.stitch.training


def test_cross_network_stitch_and_controls(task):
    """A-into-B works at a mid cut; a random bottom is a weaker sender; training is deterministic."""
    x_tr, y_tr, x_te, y_te = task["x_train"], task["y_train"], task["x_test"], task["y_test"]
    runs = []
    for _ in range(2):
        model = S.stitch(task["a"], task["b"], "block2", example=x_tr[:4])
        S.train_stitch(model, x_tr, y_tr, epochs=8, seed=3)
        runs.append(S.evaluate_stitch(model, task["b"], x_te, y_te))
    assert runs[0].stitched == runs[1].stitched
    assert runs[0].penalty >= -0.05
    rand = S.random_bottom(task["a"], seed=0)
    model = S.stitch(rand, task["b"], "fc", example=x_tr[:4])
    S.train_stitch(model, x_tr, y_tr, epochs=8, seed=3)
    assert S.evaluate_stitch(model, task["b"], x_te, y_te).stitched < runs[0].stitched - 0.2


def test_soft_target_training_agrees_with_receiver(task):
    logits = S.predict(task["b"], task["x_train"])
    model = S.stitch(task["a"], task["b"], "fc", example=task["x_train"][:4])
    S.train_stitch(model, task["x_train"], logits, soft_targets=True, epochs=15)
    assert S.agreement(model, task["b"], task["x_test"]) >= 0.9
    res = S.evaluate_stitch(model, task["b"], task["x_test"])  # no labels: agreement with B
    assert res.receiver == 1.0 and res.stitched == pytest.approx(S.agreement(model, task["b"], task["x_test"]))
    with pytest.raises(ValueError, match="soft targets must be logits"):
        S.train_stitch(model, task["x_train"], task["y_train"].float(), soft_targets=True)


def test_random_bottom_is_reinitialised_and_seeded(task):
    r1, r2 = S.random_bottom(task["a"], seed=5), S.random_bottom(task["a"], seed=5)
    r3 = S.random_bottom(task["a"], seed=6)
    w = lambda m: m.stem[0].weight  # noqa: E731
    assert torch.equal(w(r1), w(r2)) and not torch.equal(w(r1), w(r3))
    assert not torch.equal(w(r1), task["a"].stem[0].weight)
    assert torch.equal(r1.stem[1].running_mean, torch.zeros(8))
    with pytest.raises(ValueError, match="reset_parameters"):
        S.random_bottom(nn.Sequential(nn.ReLU(), nn.Flatten()))


def test_training_input_errors(task):
    model = S.stitch(task["a"], task["b"], "fc", example=task["x_train"][:4])
    with pytest.raises(ValueError, match="different numbers of rows"):
        S.train_stitch(model, task["x_train"], task["y_train"][:10])
    bad = task["x_train"][:8].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        S.train_stitch(model, bad, task["y_train"][:8])
    with pytest.raises(ValueError, match="epochs"):
        S.train_stitch(model, task["x_train"], task["y_train"], epochs=0)
    with pytest.raises(ValueError, match="accuracy in"):
        S.stitching_penalty(1.2, 0.5)
    with pytest.raises(ValueError, match="accuracy in"):
        S.stitching_penalty(float("nan"), 0.5)
    assert S.stitching_penalty(0.7, 0.9) == pytest.approx(-0.2)


# ----------------------------------------------------------------------------------------------
# Least squares
# ----------------------------------------------------------------------------------------------
def _affine_twin(net: nn.Sequential, cut: str, seed: int) -> tuple[nn.Sequential, torch.Tensor]:
    """A network whose activations at ``cut`` are a fixed random affine map of ``net``'s."""
    bottom, _ = S.split(net, cut)
    c = S.feature_shape(bottom, torch.zeros(2, 3, 12, 12))[0]
    torch.manual_seed(seed)
    if cut in ("pool", "fc"):
        mix = nn.Linear(c, c + 3)
    else:
        mix = nn.Conv2d(c, c + 3, 1)
    twin = nn.Sequential(OrderedDict([("body", bottom), ("mix", mix), ("head", nn.Flatten())]))
    return twin.eval()


@pytest.mark.parametrize("cut", ["block1", "block2", "fc"])
def test_least_squares_stitch_is_exact_on_affinely_related_features(task, cut):
    twin = _affine_twin(task["a"], cut, seed=7)
    model = S.stitch(task["a"], twin, cut, cut_b="mix", example=task["x_train"][:4])
    S.fit_least_squares(model, task["x_train"], S.split(twin, "mix")[0])
    x = task["x_test"]
    with torch.no_grad():
        got = model.stitch(model.bottom(x))
        want = S.split(twin, "mix")[0](x)
    err = (got - want).norm() / want.norm()
    assert err < 1e-4, float(err)


def test_least_squares_self_stitch_keeps_accuracy(task):
    for cut in CUTS:
        model = S.stitch(task["a"], task["a"], cut, example=task["x_train"][:4])
        S.fit_least_squares(model, task["x_train"], S.split(task["a"], cut)[0])
        with torch.no_grad():
            assert torch.allclose(model(task["x_test"]), task["a"](task["x_test"]), atol=1e-3), cut


def test_least_squares_rejects_other_layers(task):
    model = S.stitch(task["a"], task["a"], "fc", stitch_layer=nn.Identity())
    with pytest.raises(ValueError, match="supports ConvStitch and LinearStitch"):
        S.fit_least_squares(model, task["x_train"], S.split(task["a"], "fc")[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), d_x=st.integers(1, 12), d_y=st.integers(1, 12))
def test_fit_linear_map_recovers_an_affine_map(seed, d_x, d_y):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3 * d_x + 5, d_x))
    w, c = rng.normal(size=(d_x, d_y)), rng.normal(size=d_y)
    w_hat, c_hat = S.fit_linear_map(x, x @ w + c)
    np.testing.assert_allclose(w_hat, w, atol=1e-8)
    np.testing.assert_allclose(c_hat, c, atol=1e-8)


def test_fit_linear_map_ridge_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    y = x @ rng.normal(size=(4, 2))
    w0, _ = S.fit_linear_map(x, y)
    w1, _ = S.fit_linear_map(x, y, ridge=100.0)
    assert np.linalg.norm(w1) < np.linalg.norm(w0)
    with pytest.raises(ValueError, match="different numbers of rows"):
        S.fit_linear_map(x, y[:10])
    with pytest.raises(ValueError, match="2-D"):
        S.fit_linear_map(x[:, 0], y)
    with pytest.raises(ValueError, match="inf"):
        S.fit_linear_map(np.where(x > 2, np.inf, x), y)
    with pytest.raises(ValueError, match="ridge"):
        S.fit_linear_map(x, y, ridge=-1.0)


# ----------------------------------------------------------------------------------------------
# Relative representations
# ----------------------------------------------------------------------------------------------
def _random_orthogonal(d: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 10), scale=st.floats(0.01, 100.0))
def test_relative_representation_is_invariant_to_rotation_and_scale(seed, d, scale):
    rng = np.random.default_rng(seed)
    x, anchors = rng.normal(size=(20, d)), rng.normal(size=(7, d))
    q = _random_orthogonal(d, rng)
    r0 = S.relative_representation(x, anchors)
    r1 = S.relative_representation(scale * x @ q, scale * anchors @ q)
    assert r0.shape == (20, 7)
    np.testing.assert_allclose(r0, r1, atol=1e-10)
    assert np.all(np.abs(r0) <= 1 + 1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 10), scale=st.floats(0.01, 100.0),
       shift=st.floats(-50.0, 50.0))
def test_centred_relative_representation_is_also_invariant_to_translation(seed, d, scale, shift):
    rng = np.random.default_rng(seed)
    x, anchors = rng.normal(size=(20, d)), rng.normal(size=(7, d))
    q, t = _random_orthogonal(d, rng), shift * rng.normal(size=d)
    r0 = S.relative_representation(x, anchors, center=True)
    r1 = S.relative_representation(scale * x @ q + t, scale * anchors @ q + t, center=True)
    np.testing.assert_allclose(r0, r1, atol=1e-8)
    r_raw = S.relative_representation(x + 10.0, anchors + 10.0)
    assert not np.allclose(r_raw, S.relative_representation(x, anchors), atol=1e-3)


def test_relative_representation_errors():
    with pytest.raises(ValueError, match="different widths"):
        S.relative_representation(np.ones((3, 4)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="all zeros"):
        S.relative_representation(np.zeros((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="after centring"):
        S.relative_representation(np.ones((3, 4)), np.ones((2, 4)), center=True)
    with pytest.raises(ValueError, match="2-D"):
        S.relative_representation(np.ones(4), np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        S.relative_representation(np.full((3, 4), np.nan), np.ones((2, 4)))


def test_zero_shot_swap_relative_survives_a_rotation_absolute_does_not():
    rng = np.random.default_rng(0)
    d, n_cls = 16, 4
    centers = 3 * rng.normal(size=(n_cls, d))
    y = rng.integers(0, n_cls, 400)
    feats_a = centers[y] + rng.normal(size=(400, d))
    q = _random_orthogonal(d, rng)
    feats_b = 2.5 * feats_a @ q  # encoder B: the same geometry in another basis and scale
    tr, te, anc = slice(0, 200), slice(200, 400), slice(0, 40)
    base = S.zero_shot_swap(feats_a[tr], y[tr], feats_a[te], y[te])
    rel = S.zero_shot_swap(feats_a[tr], y[tr], feats_b[te], y[te], feats_a[anc], feats_b[anc])
    rel_base = S.zero_shot_swap(feats_a[tr], y[tr], feats_a[te], y[te], feats_a[anc], feats_a[anc])
    absolute = S.zero_shot_swap(feats_a[tr], y[tr], feats_b[te], y[te])
    assert base >= 0.95 and rel_base >= 0.95
    assert rel == pytest.approx(rel_base)
    centred_base = S.zero_shot_swap(feats_a[tr], y[tr], feats_a[te], y[te], feats_a[anc], feats_a[anc],
                                    center=True)
    shifted = S.zero_shot_swap(feats_a[tr], y[tr], feats_b[te] + 5.0, y[te], feats_a[anc],
                               feats_b[anc] + 5.0, center=True)
    assert shifted == pytest.approx(centred_base)
    assert absolute < 0.7
    with pytest.raises(ValueError, match="equal widths"):
        S.zero_shot_swap(feats_a[tr], y[tr], feats_a[te, :5], y[te])
    with pytest.raises(ValueError, match="both anchors_a and anchors_b"):
        S.zero_shot_swap(feats_a[tr], y[tr], feats_b[te], y[te], anchors_a=feats_a[anc])
    with pytest.raises(ValueError, match="same samples"):
        S.zero_shot_swap(feats_a[tr], y[tr], feats_b[te], y[te], feats_a[anc], feats_b[:10])
    with pytest.raises(ValueError, match="different numbers of rows"):
        S.zero_shot_swap(feats_a[tr], y[:3], feats_b[te], y[te])


# ----------------------------------------------------------------------------------------------
# Multi-task heads (zoo classifiers concatenate the logits of several tasks)
# ----------------------------------------------------------------------------------------------
def test_multitask_head_stitching(task):
    slices = {"quadrant": slice(0, 4), "row": slice(4, 6)}
    x_tr, x_te = task["x_train"], task["x_test"]
    y_tr = torch.stack([task["y_train"], task["y_train"] // 2], dim=1)
    y_te = torch.stack([task["y_test"], task["y_test"] // 2], dim=1)
    torch.manual_seed(3)
    net = tiny_cnn(30)
    net.head = nn.Linear(32, 6)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(10):
        for i in range(0, len(x_tr), 64):
            loss = S._task_loss(net(x_tr[i:i + 64]), y_tr[i:i + 64], S._slices(slices))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    accs = S.task_accuracies(net, x_te, y_te, slices)
    assert accs.shape == (2,) and accs.min() >= 0.9
    assert S.accuracy(net, x_te, y_te, slices) == pytest.approx(accs.mean())
    assert S.predicted_labels(net, x_te, slices).shape == (len(x_te), 2)
    model = S.stitch(task["a"], net, "block1", example=x_tr[:4])
    S.train_stitch(model, x_tr, y_tr, epochs=10, task_slices=slices)
    res = S.evaluate_stitch(model, net, x_te, y_te, task_slices=slices)
    assert res.stitched >= 0.99 * res.receiver
    assert S.evaluate_stitch(model, net, x_te, task_slices=slices).receiver == 1.0
    with pytest.raises(ValueError, match=r"\(n, 2\) for 2 task slices"):
        S.train_stitch(model, x_tr, task["y_train"][:, None].repeat(1, 3), task_slices=slices)
    with pytest.raises(ValueError, match="task_slices must be"):
        S.accuracy(net, x_te, y_te, task_slices={"a": 3})


# ----------------------------------------------------------------------------------------------
# compare_cuts: many stitches from cached activations
# ----------------------------------------------------------------------------------------------
def test_compare_cuts_matches_direct_stitches_and_is_deterministic(task):
    cuts = ["block1", "pool"]
    acts = {(name, split): S.activations(task[name], task[f"x_{split}"], cuts)
            for name in ("a", "b") for split in ("train", "test")}
    kw = dict(sender_train=acts["a", "train"], sender_test=acts["a", "test"],
              receiver_train=acts["b", "train"], receiver_test=acts["b", "test"], receiver=task["b"],
              y_train=task["y_train"], y_test=task["y_test"], epochs=2,
              methods=("lstsq", "task", "lstsq+task", "identity"))
    recs = S.compare_cuts(**kw)
    assert [(r["cut"], r["method"]) for r in recs] == [(c, m) for c in cuts
                                                        for m in ("lstsq", "task", "lstsq+task", "identity")]
    assert recs == S.compare_cuts(**kw)
    receiver_acc = S.accuracy(task["b"], task["x_test"], task["y_test"])
    direct = S.stitch(task["a"], task["b"], "block1", example=task["x_train"][:4])
    S.fit_least_squares(direct, task["x_train"], S.split(task["b"], "block1")[0])
    acc = S.accuracy(direct, task["x_test"], task["y_test"])
    rec = recs[0]
    assert rec["receiver"] == pytest.approx(receiver_acc)
    assert rec["stitched"] == pytest.approx(acc, abs=1 / len(task["x_test"]))
    assert rec["penalty"] == pytest.approx(rec["stitched"] - rec["receiver"])
    # without test labels: agreement with the receiver, which then scores 1
    agree = S.compare_cuts(**{**kw, "y_test": None, "methods": ("lstsq",)})
    assert all(r["receiver"] == 1.0 for r in agree)


def test_compare_cuts_errors(task):
    acts = S.activations(task["a"], task["x_test"][:20], ["block1"])
    with pytest.raises(ValueError, match="unknown method"):
        S.compare_cuts(acts, acts, acts, acts, task["b"], methods=("magic",))
    with pytest.raises(ValueError, match="need y_train"):
        S.compare_cuts(acts, acts, acts, acts, task["b"], methods=("task",))
    with pytest.raises(ValueError, match="no activations for cut"):
        S.compare_cuts(acts, acts, acts, acts, task["b"], cuts=["pool"], methods=("lstsq",))
    short = {"block1": acts["block1"][:10]}
    with pytest.raises(ValueError, match="different numbers of inputs"):
        S.compare_cuts(acts, acts, short, acts, task["b"], methods=("lstsq",))
    with pytest.raises(ValueError, match="y_test have different numbers of rows"):
        S.compare_cuts(acts, acts, acts, acts, task["b"], y_test=task["y_test"][:5], methods=("lstsq",))


def test_compare_cuts_scores_the_receiver_like_accuracy_and_agreement(task):
    acts = {split: S.activations(task["b"], task[f"x_{split}"], ["block1"]) for split in ("train", "test")}
    kw = dict(sender_train=acts["train"], sender_test=acts["test"], receiver_train=acts["train"],
              receiver_test=acts["test"], receiver=task["b"], methods=("lstsq",))
    labelled = S.compare_cuts(**kw, y_test=task["y_test"], batch_size=7)[0]
    assert labelled["receiver"] == pytest.approx(S.accuracy(task["b"], task["x_test"], task["y_test"]))
    # a self-stitch by least squares is exact: it agrees with the receiver on every input
    assert S.compare_cuts(**kw, y_test=None)[0]["stitched"] == 1.0


def test_least_squares_and_swaps_leave_the_callers_thread_setting_alone():
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((60, 4)), np.repeat(np.arange(3), 20)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        S.fit_linear_map(x, x @ rng.standard_normal((4, 3)))
        S.zero_shot_swap(x, labels, x, labels)
        S.swap_table({"a": x}, labels, np.arange(40), np.arange(40, 60))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_swap_table_matches_zero_shot_swap_cell_by_cell():
    rng = np.random.default_rng(5)
    n, labels = 120, np.repeat(np.arange(3), 40)
    base = rng.standard_normal((n, 6)) + 2.0 * np.eye(3, 6)[labels]
    rotation = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    emb = {"a": base, "rotated": base @ rotation, "narrow": base[:, :4] + 0.1 * rng.standard_normal((n, 4))}
    order = rng.permutation(n)
    train, test, anchors = order[:80], order[80:], order[:30]
    for anchor_idx, center in ((None, False), (anchors, False), (anchors, True)):
        table = S.swap_table(emb, labels, train, test, anchor_idx=anchor_idx, center=center)
        for a in emb:
            for b in emb:
                if anchor_idx is None and emb[a].shape[1] != emb[b].shape[1]:
                    assert np.isnan(table.loc[a, b])
                    continue
                extra = {} if anchor_idx is None else dict(anchors_a=emb[a][anchors], anchors_b=emb[b][anchors],
                                                           center=center)
                expected = S.zero_shot_swap(emb[a][train], labels[train], emb[b][test], labels[test],
                                                    **extra)
                assert table.loc[a, b] == expected


def test_swap_table_errors():
    with pytest.raises(ValueError, match="empty"):
        S.swap_table({}, [0, 1], [0], [1])
    with pytest.raises(ValueError, match="same samples"):
        S.swap_table({"a": np.ones((4, 2)), "b": np.ones((5, 2))}, [0, 1, 0, 1], [0, 1], [2, 3])


# ----------------------------------------------------------------------------------------------
# Positions as samples: what a per-pixel stitch sees
# ----------------------------------------------------------------------------------------------
def test_position_samples_pair_the_same_pixel_of_the_same_image():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(7, 5, 4, 3, generator=g)
    w, c = torch.randn(6, 5, generator=g), torch.randn(6, generator=g)
    b = torch.einsum("oc,nchw->nohw", w, a) + c[None, :, None, None]   # a 1x1 convolution of a
    rows_a, rows_b = S.position_samples(a, b, per_image=2, standardize=False, seed=1)
    assert rows_a.shape == (14, 5) and rows_b.shape == (14, 6)
    np.testing.assert_allclose(rows_b, rows_a @ w.double().numpy().T + c.double().numpy(), atol=1e-5)
    # every row is a pixel of its own image: image i owns rows 2i and 2i + 1, at two different positions
    pixels = a.permute(0, 2, 3, 1).reshape(7, 12, 5).double().numpy()
    for i in range(7):
        hits = [int(np.flatnonzero(np.all(np.isclose(pixels[i], row), axis=1))[0]) for row in rows_a[2 * i:2 * i + 2]]
        assert len(set(hits)) == 2


def test_position_samples_draw_without_replacement_and_are_seeded():
    a = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    rows, _ = S.position_samples(a, a, per_image=9, standardize=False, seed=0)
    assert sorted(rows[:9, 0]) == list(range(9)) and sorted(rows[9:, 0]) == list(range(9, 18))
    first, _ = S.position_samples(a, a, per_image=2, standardize=False, seed=4)
    again, _ = S.position_samples(a, a, per_image=2, standardize=False, seed=4)
    np.testing.assert_array_equal(first, again)
    draws = {tuple(S.position_samples(a, a, per_image=2, standardize=False, seed=s)[0][:, 0]) for s in range(6)}
    assert len(draws) > 1


def test_position_samples_standardise_each_channel_over_all_positions():
    g = torch.Generator().manual_seed(0)
    a = 3.0 + 5.0 * torch.randn(50, 3, 4, 4, generator=g)
    a[:, 2] = 7.0                                        # a dead channel: constant everywhere
    rows, _ = S.position_samples(a, a, per_image=16, seed=0)   # every position: the whole tensor
    np.testing.assert_allclose(rows[:, :2].mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(rows[:, :2].std(0), 1.0, atol=1e-9)
    assert np.all(rows[:, 2] == 0.0)
    v = torch.randn(10, 4, generator=g)                  # vectors: one sample per image already
    va, vb = S.position_samples(v, 2 * v, standardize=False)
    np.testing.assert_array_equal(va, v.double().numpy())
    np.testing.assert_allclose(vb, 2 * va)


def test_position_samples_errors():
    a = torch.zeros(4, 2, 3, 3)
    with pytest.raises(ValueError, match="spatial sizes"):
        S.position_samples(a, torch.zeros(4, 2, 2, 2))
    with pytest.raises(ValueError, match="different numbers of inputs"):
        S.position_samples(a, torch.zeros(5, 2, 3, 3))
    with pytest.raises(ValueError, match="both be feature maps"):
        S.position_samples(a, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="both be feature maps"):
        S.position_samples(torch.zeros(4, 2, 3), torch.zeros(4, 2, 3))
    for bad in (0, 10, 1.5, True):
        with pytest.raises(ValueError, match="per_image"):
            S.position_samples(a, a, per_image=bad)
    nan = a.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        S.position_samples(nan, a)
