"""Tests for prhlib.zoo: architectures, the cache, determinism, and that training really learns."""

import json

import numpy as np
import pytest
import torch

from prhlib import world, zoo

TINY_CNN = zoo.TrainConfig(arch="cnn", width=16, depth=2, tasks=("color", "x"), n_train=1024, epochs=4)
TINY_BOW = zoo.TrainConfig(arch="bow", width=32, depth=1, n_train=512, epochs=8, lr=1e-2)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PRH_PROGRESS", "0")
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def probe_data():
    return world.sample(48, seed=5)


@pytest.mark.parametrize("arch", zoo.IMAGE_ARCHS + zoo.TEXT_ARCHS)
def test_every_arch_is_a_cuttable_sequential(arch, probe_data):
    cfg = zoo.TrainConfig(arch=arch, width=16, depth=2)
    model = zoo.build(cfg)
    names = [n for n, _ in model.named_children()]
    assert isinstance(model, torch.nn.Sequential) and names[-1] == "head"
    # the zoo's metadata are declared attributes of the model class
    assert isinstance(model, zoo.ZooModel) and model.arch == arch and model.prh_config == cfg
    assert model.modality == ("image" if arch in zoo.IMAGE_ARCHS else "text") and model.partner is None
    assert names[1:3] == ["block1", "block2"]
    feats = zoo.embed(model, probe_data)
    assert feats.shape == (48, len(names) - 1, 16) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats))
    # the final representation is everything before the head
    rep = zoo.encode(model, probe_data)
    model.eval()
    with torch.no_grad():
        direct = model[:-1](zoo.prepare(model, probe_data)).numpy()
    np.testing.assert_allclose(rep, direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rep, feats[:, -1], rtol=1e-5, atol=1e-5)
    # the multi-task head concatenates one slice per task
    out = model(zoo.prepare(model, probe_data))
    assert out.shape[1] == sum(world.n_classes(t) for t in cfg.tasks)
    assert [model.task_slices[t].stop - model.task_slices[t].start for t in cfg.tasks] == [
        world.n_classes(t) for t in cfg.tasks]


def test_embed_selects_layers_by_name(probe_data):
    model = zoo.build(zoo.TrainConfig(width=8, depth=2))
    two = zoo.embed(model, probe_data, layers=["block2", "stem"])
    allf = zoo.embed(model, probe_data)
    np.testing.assert_allclose(two, allf[:, [0, 2]], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown layer"):
        zoo.embed(model, probe_data, layers=["block9"])
    with pytest.raises(ValueError, match="different widths"):
        zoo.embed(model, probe_data, layers=["pool", "head"])


def test_config_key_and_validation():
    a = zoo.TrainConfig(world={"text_drop": ["color"]})
    b = zoo.as_config({"world": (("text_drop", ("color",)),)})
    assert a == b and a.key() == b.key()
    assert a.key() != zoo.TrainConfig().key() != zoo.TrainConfig(seed=1).key()
    assert zoo.TrainConfig(tasks="shape").tasks == ("shape",)
    assert len(zoo.grid(TINY_BOW, width=[8, 16], seed=[0, 1, 2])) == 6
    for bad, match in [({"arch": "resnet"}, "unknown arch"), ({"objective": "gan"}, "unknown objective"),
                       ({"tasks": ("smell",)}, "unknown task"), ({"tasks": ()}, "at least one task"),
                       ({"batch_size": 64, "n_train": 10}, "exceeds n_train"), ({"width": 0}, "width must be between 1"),
                       ({"lr": float("nan")}, "lr"), ({"arch": "bow", "objective": "clip"}, "image arch"),
                       ({"world": {"text_drop": ("smell",)}}, "text_drop"), ({"arch": "vit", "width": 12}, "multiple")]:
        with pytest.raises(ValueError, match=match):
            zoo.TrainConfig(**bad)
    with pytest.raises(ValueError, match="TrainConfig got unknown keyword argument.*'widht'"):
        zoo.as_config({"widht": 3})
    # wrong types are named, never coerced (True is not a width, "x" is not a seed)
    for bad, match in [({"seed": "x"}, "seed"), ({"width": True}, "width"), ({"data_seed": 1.5}, "data_seed"),
                       ({"seed": -1}, "seed"), ({"lr": True}, "lr"), ({"epochs": 2.0}, "epochs")]:
        with pytest.raises(ValueError, match=match):
            zoo.TrainConfig(**bad)


def test_inputs_are_validated():
    mlp = zoo.build(zoo.TrainConfig(arch="mlp", width=8, depth=1))
    with pytest.raises(ValueError, match="32 px"):
        zoo.embed(mlp, world.sample(4, seed=0, image_size=40).images)
    with pytest.raises(ValueError, match="uint8"):
        zoo.prepare(mlp, np.zeros((2, 32, 32, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="n x H x W x 3"):
        zoo.prepare(mlp, np.zeros((2, 32, 32), dtype=np.uint8))
    gru = zoo.build(zoo.TrainConfig(arch="gru", width=8, depth=1, max_len=4))
    with pytest.raises(ValueError, match="max_len"):
        zoo.prepare(gru, ["a very long caption with many words"])
    with pytest.raises(ValueError, match="list of strings"):
        zoo.prepare(gru, "one string")
    # left padding: the last position holds the last word
    ids = zoo.token_ids(["a red circle"], max_len=5)
    assert ids[0, :2].tolist() == [0, 0] and ids[0, -1] == zoo.text_vocabulary().index("circle")
    assert zoo.bag_of_words(["red red zebra"])[0, zoo.text_vocabulary().index("red")] == 2
    assert zoo.bag_of_words(["zebra"])[0, 1] == 1  # unknown word


def test_a_trained_cnn_beats_chance_by_a_wide_margin_and_is_cached(tmp_path):
    model, m = zoo.train(TINY_CNN)
    assert m["cached"] is False and m["train_seconds"] > 0
    # chance is the majority-class rate: 1/8 for colour, about 0.6 for x (objects cluster mid-image)
    assert m["accuracy"]["color"] > m["chance"]["color"] + 0.6, m
    assert m["accuracy"]["x"] > m["chance"]["x"] + 0.15, m
    assert m["final_loss"] < 0.5 * m["first_loss"]
    # linear probes of the representation see colour too, and the competence summary is their mean
    assert m["probe"]["color"] > m["probe_chance"]["color"] + 0.3
    assert m["competence"] == pytest.approx(np.mean(list(m["probe"].values())))
    # held-out evaluation reproduces the stored numbers
    assert zoo.evaluate(model)["accuracy"] == m["accuracy"]
    # second call loads from disk: same weights, same numbers, no leftover temporary files
    again, m2 = zoo.train(TINY_CNN)
    assert m2["cached"] is True and m2["accuracy"] == m["accuracy"]
    for (k, v), (_, w) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(v, w), k
    files = sorted(p.name for p in (tmp_path / "zoo").iterdir())
    assert files == [f"{TINY_CNN.key()}.json", f"{TINY_CNN.key()}.pt"]
    assert json.loads((tmp_path / "zoo" / files[0]).read_text())["config"]["width"] == 16


def test_training_is_deterministic():
    a, ma = zoo.train(TINY_BOW)
    b, mb = zoo.train(TINY_BOW, force=True)
    assert mb["cached"] is False
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k
    c, _ = zoo.train(TINY_BOW.replace(seed=1))
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)


def test_text_model_learns_and_text_drop_hides_colour():
    _, full = zoo.train(TINY_BOW)
    assert full["accuracy"]["shape"] > 0.9 and full["accuracy"]["x"] > 0.9
    model, blind = zoo.train(TINY_BOW.replace(world={"text_drop": ("color",)}))
    assert blind["accuracy"]["color"] < blind["chance"]["color"] + 0.1
    assert blind["accuracy"]["shape"] > 0.9


def test_a_corrupt_cache_entry_is_retrained(tmp_path):
    zoo.train(TINY_BOW)
    (tmp_path / "zoo" / f"{TINY_BOW.key()}.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unreadable cache entry"):
        _, m = zoo.train(TINY_BOW)
    assert m["cached"] is False
    # weights of another architecture under the same key (a recipe change without a RECIPE bump)
    other = zoo.build(TINY_BOW.replace(width=8))
    torch.save({"model": other.state_dict()}, tmp_path / "zoo" / f"{TINY_BOW.key()}.pt")
    with pytest.warns(RuntimeWarning, match="does not fit"):
        _, m = zoo.train(TINY_BOW)
    assert m["cached"] is False


def test_the_key_follows_the_recipe_and_the_world(monkeypatch):
    key = TINY_BOW.key()
    monkeypatch.setattr(zoo, "RECIPE", zoo.RECIPE + 1)
    assert TINY_BOW.key() != key
    monkeypatch.setattr(zoo, "RECIPE", zoo.RECIPE - 1)
    assert TINY_BOW.key() == key
    monkeypatch.setitem(world.DEFAULT_OPTIONS, "noise", 9.0)
    assert TINY_BOW.key() != key


def test_clip_and_self_supervised_objectives_train():
    clip_cfg = zoo.TrainConfig(arch="cnn", width=16, depth=1, objective="clip", text_width=32, n_train=1024,
                               epochs=3, embed_dim=16, lr=1e-2)
    model, m = zoo.train(clip_cfg)
    assert isinstance(model.partner, zoo.ZooModel) and model.partner.modality == "text"
    assert not any(k.startswith("_partner") for k in model.state_dict())
    assert [n for n, _ in model.named_children()][-1] == "head"  # the partner is not a child
    assert m["final_loss"] < 0.8 * m["first_loss"], m
    assert m["retrieval_top1"] > 3 * m["retrieval_chance"], m
    loaded, _ = zoo.train(clip_cfg)
    caps = world.sample(8, seed=3).captions
    np.testing.assert_allclose(zoo.encode(loaded.partner, caps), zoo.encode(model.partner, caps), atol=1e-6)
    with pytest.raises(ValueError, match="probe"):
        zoo.evaluate(model)
    _, s = zoo.train(zoo.TrainConfig(arch="bow", width=16, depth=1, objective="simclr", n_train=512, epochs=2))
    assert s["competence"] > np.mean(list(s["probe_chance"].values())) + 0.1
    _, ae = zoo.train(zoo.TrainConfig(arch="mlp", width=16, depth=1, objective="autoencode", n_train=256,
                                      epochs=2))
    assert ae["probe"]["color"] > ae["probe_chance"]["color"] + 0.2


def test_reproducible_restores_the_thread_count():
    torch.set_num_threads(2)
    with zoo.reproducible("cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)


def test_info_nce_is_the_symmetric_contrastive_loss():
    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    # by hand: cross-entropy of picking the partner, both directions, on cosine similarities / t
    a, b = za / za.norm(dim=1, keepdim=True), zb / zb.norm(dim=1, keepdim=True)
    logits = a @ b.T / 0.1
    by_hand = -(torch.diag(logits.log_softmax(1)).mean() + torch.diag(logits.log_softmax(0)).mean()) / 2
    assert zoo.info_nce(za, zb, 0.1).item() == pytest.approx(by_hand.item(), rel=1e-5)
    # perfect pairing at a low temperature costs almost nothing; the scale of the rows does not matter
    assert zoo.info_nce(za, 3 * za, 0.01).item() < 1e-3
    assert zoo.info_nce(za, zb, 0.1).item() > 1.0
    for bad, match in [((za, zb[:4]), "n x d"), ((za[:1], zb[:1]), "n >= 2"), ((za.numpy(), zb), "tensors")]:
        with pytest.raises(ValueError, match=match):
            zoo.info_nce(*bad)
    with pytest.raises(ValueError, match="temperature"):
        zoo.info_nce(za, zb, 0.0)


def test_one_loss_per_objective_and_train_many():
    assert set(zoo.LOSSES) == set(zoo.OBJECTIVES)
    out = zoo.train_many({"a": TINY_BOW.replace(epochs=1), "b": TINY_BOW.replace(epochs=1, seed=1)})
    assert list(out) == ["a", "b"] and all(isinstance(m, zoo.ZooModel) for m, _ in out.values())
    assert len(zoo.train_many([TINY_BOW.replace(epochs=1)])) == 1
    with pytest.raises(ValueError, match="dict"):
        zoo.train_many(TINY_BOW)


def test_grid_and_replace_reject_unknown_options():
    """A misspelt option is a ValueError naming it and the valid fields, not a raw TypeError."""
    with pytest.raises(ValueError, match=r"zoo.grid got unknown keyword argument\(s\) 'bogus'.*width"):
        zoo.grid(TINY_BOW, bogus=[1, 2])
    with pytest.raises(ValueError, match="'widht'"):
        zoo.grid(widht=[8], seed=[0])
    with pytest.raises(ValueError, match="TrainConfig.replace got unknown keyword.*'sed'"):
        TINY_BOW.replace(sed=1)
    assert zoo.grid(TINY_BOW, seed=[3])[0] == TINY_BOW.replace(seed=3)


def test_a_diverging_run_raises():
    """The shared training loop refuses a non-finite loss instead of caching a broken model."""
    cfg = zoo.TrainConfig(arch="mlp", width=8, depth=1, n_train=64, epochs=1, lr=1e30, tasks=("shape",))
    with pytest.raises(RuntimeError, match="training diverged.*lower lr"):
        zoo.train(cfg, force=True)
