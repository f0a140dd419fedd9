"""``data.load_definitions``: the held-out text of chapter 5's competence test (WordNet glosses via timm)."""

from __future__ import annotations

import pytest

from prhlib import data


def test_definitions_are_aligned_unique_and_real():
    terms, definitions = data.load_definitions()
    assert len(terms) == len(definitions) > 900          # 1,000 ImageNet classes minus repeated names
    assert len(set(t.lower() for t in terms)) == len(terms)
    assert len(set(d.lower() for d in definitions)) == len(definitions)
    assert all(t and d and ":" not in t for t, d in zip(terms, definitions))
    pairs = dict(zip(terms, definitions))
    assert "cat" in pairs["tabby"] and "coat" in pairs["tabby"]
    assert "fish" in pairs["goldfish"]


def test_subset_is_deterministic_and_in_canonical_order():
    terms, definitions = data.load_definitions()
    sub_t, sub_d = data.load_definitions(50, seed=3)
    assert (sub_t, sub_d) == data.load_definitions(50, seed=3)
    assert sub_t != data.load_definitions(50, seed=4)[0]
    positions = [terms.index(t) for t in sub_t]
    assert positions == sorted(positions)
    assert all(definitions[p] == d for p, d in zip(positions, sub_d))


@pytest.mark.parametrize("bad", [0, -1, 10**6, 2.5, True, "10"])
def test_bad_n_raises(bad):
    with pytest.raises(ValueError, match="n"):
        data.load_definitions(bad)


def test_shares_no_text_with_the_tuxpaint_pairs():
    if not data.TUXPAINT_DIR.exists():
        pytest.skip("tuxpaint-stamps-default is not installed")
    _, captions = data.load_pairs("tuxpaint")
    terms, definitions = data.load_definitions()
    caption_set = {c.lower().strip(" .") for c in captions}
    assert not caption_set & {d.lower() for d in definitions}
