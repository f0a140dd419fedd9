"""prhlib.config: the profile switch, seeds, cache folder."""

import time

import numpy as np
import pytest

from prhlib import config


@pytest.fixture(autouse=True)
def _restore_profile(monkeypatch):
    saved = dict(config._state)
    yield
    config._state.clear()
    config._state.update(saved)


def test_default_profile_is_small(monkeypatch):
    monkeypatch.delenv("PRH_PROFILE", raising=False)
    config._state["profile"] = None
    assert config.profile() == "small"
    assert not config.is_full()


def test_profile_from_environment(monkeypatch):
    config._state["profile"] = None
    monkeypatch.setenv("PRH_PROFILE", "SMALL ")
    assert config.profile() == "small"


def test_unknown_profile_names_the_choices(monkeypatch):
    with pytest.raises(ValueError, match="small.*full"):
        config.set_profile("medium")
    config._state["profile"] = None
    monkeypatch.setenv("PRH_PROFILE", "gpu")
    with pytest.raises(ValueError, match="PRH_PROFILE"):
        config.profile()


def test_full_profile_offline_flag_fails_fast_and_says_how_to_switch(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="PRH_PROFILE=small"):
        config.set_profile("full")
    assert time.monotonic() - start < 30
    assert config.profile() != "full"


def test_full_profile_unreachable_host_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # A closed port on loopback: refused at once, like a machine with no route to the hub.
    monkeypatch.setattr(config, "FULL_PROFILE_HOSTS", (("127.0.0.1", 9),))
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="internet"):
        config.setup(profile="full", quiet=True)
    assert time.monotonic() - start < 30


def test_setup_prints_profile_and_seed(capsys, monkeypatch):
    monkeypatch.delenv("PRH_PROFILE", raising=False)
    config._state["profile"] = None
    assert config.setup(seed=7) is None  # nothing to echo as a notebook cell's value
    out = capsys.readouterr().out
    assert "profile: small" in out and "seed: 7" in out
    facts = config.info()
    assert facts["seed"] == 7 and facts["profile"] == "small"


def test_seed_everything_makes_numpy_and_torch_repeatable():
    torch = pytest.importorskip("torch")
    config.seed_everything(3)
    a = np.random.rand(3), torch.rand(3)
    config.seed_everything(3)
    b = np.random.rand(3), torch.rand(3)
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRH_CACHE_DIR", str(tmp_path / "c"))
    path = config.cache_dir("features", "x")
    assert path == tmp_path / "c" / "features" / "x" and path.is_dir()
