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
    monkeypatch.setitem(config._state, "network_ok", False)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="internet"):
        config.setup(profile="full", quiet=True, allow_cpu=True)
    assert time.monotonic() - start < 30


def test_network_check_names_the_host_and_respects_its_timeout(monkeypatch):
    import socket

    def slow(*args, **kwargs):
        time.sleep(5)  # a name lookup that hangs: the check must not wait for it
        raise OSError("too late")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", slow)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="example.org:443"):
        config.check_network(timeout=0.3, hosts=(("example.org", 443),))
    assert time.monotonic() - start < 2


@pytest.fixture
def no_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(config.ALLOW_CPU_ENV, raising=False)
    monkeypatch.setattr(config, "check_network", lambda *a, **k: None)
    monkeypatch.setitem(config._state, "network_ok", False)
    config._state["profile"] = None
    monkeypatch.setenv("PRH_PROFILE", "small")


def test_full_profile_without_gpu_stops_at_once_with_the_colab_fix(no_gpu, capsys):
    start = time.monotonic()
    for call in (lambda: config.setup(profile="full"), lambda: config.check_gpu()):
        with pytest.raises(RuntimeError, match=r"Runtime > Change runtime type > .*GPU"):
            call()
    assert time.monotonic() - start < 5
    assert config.profile() == "small" and capsys.readouterr().out == ""  # nothing changed, nothing printed


def test_full_profile_on_cpu_with_an_explicit_override(no_gpu, monkeypatch, capsys):
    config.setup(profile="full", allow_cpu=True)
    assert config.profile() == "full" and "device: cpu" in capsys.readouterr().out
    config._state["profile"] = None
    monkeypatch.setenv(config.ALLOW_CPU_ENV, "1")
    config.setup(profile="full", quiet=True)
    assert config.profile() == "full"


def test_full_profile_with_a_gpu_passes_the_check(no_gpu, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config.check_gpu()  # no error


@pytest.mark.parametrize("bad", [1.5, True, -1, 2**32, None, "abc", np.float64(3.0)])
def test_bad_seed_raises_before_changing_anything(bad, monkeypatch):
    monkeypatch.delenv("PRH_PROFILE", raising=False)
    config._state["profile"] = None
    config.seed_everything(5)
    np.random.seed(11)
    before = np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match="seed"):
        config.setup(profile="small", seed=bad, quiet=True)
    assert config.seed() == 5 and config._state["profile"] is None
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # no generator was touched
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(bad)
    assert config.seed() == 5


def test_setup_accepts_numpy_integer_seeds_and_the_largest_seed(capsys):
    config.setup(profile="small", seed=np.int64(2**32 - 1), quiet=True)
    assert config.seed() == 2**32 - 1 and type(config.seed()) is int


def test_setup_sets_no_thread_count():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config.setup(profile="small", quiet=True)
        assert torch.get_num_threads() == 1  # thread policy lives in prhlib._threads only
    finally:
        torch.set_num_threads(before)


def test_config_does_not_import_plotting_at_import_time():
    import subprocess
    import sys

    code = "import sys, prhlib.config; print('prhlib.plotting' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


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
