import pytest
from pydantic import ValidationError

from expo_sdk import FinetuneConfig
from expo_sdk.config import apply_overrides, load_yaml


def test_unknown_key_names_the_key_and_the_nearest_valid_one():
    with pytest.raises(ValidationError, match=r"unknown FinetuneConfig key 'utd_raito'; did you mean 'utd_ratio'"):
        FinetuneConfig(utd_raito=5)


def test_unknown_nested_key_is_rejected():
    with pytest.raises(ValidationError, match=r"unknown CriticConfig key 'ensemble'.*'ensemble_size'"):
        FinetuneConfig(critic={"ensemble": 4})


@pytest.mark.parametrize("bad", [{"beta": 0.0}, {"beta": -0.1}, {"num_samples": 0}, {"utd_ratio": 0},
                                 {"batch_size": 0}, {"gamma": 1.5}, {"replay": {"offline_ratio": 1.2}}])
def test_out_of_range_values_are_rejected(bad):
    with pytest.raises(ValidationError):
        FinetuneConfig(**bad)


def test_paper_defaults():
    cfg = FinetuneConfig()
    assert (cfg.batch_size, cfg.gamma, cfg.utd_ratio) == (256, 0.99, 20)
    assert (cfg.critic.ensemble_size, cfg.critic.num_min_q, cfg.critic.tau) == (10, 2, 0.005)
    assert (cfg.selector.num_samples, cfg.edit_head.beta, cfg.base_ema_decay) == (8, 0.05, 0.999)


def test_shortcuts_map_to_their_sections_and_conflicts_fail():
    cfg = FinetuneConfig(beta=0.3, num_samples=4)
    assert cfg.edit_head.beta == 0.3 and cfg.selector.num_samples == 4 and cfg.beta == 0.3
    with pytest.raises(ValidationError, match="conflicts"):
        FinetuneConfig(beta=0.3, edit_head={"beta": 0.1})


def test_cache_of_an_imitation_updated_base_needs_a_refresh_schedule():
    with pytest.raises(ValidationError, match="cache_refresh_per_step > 0"):
        FinetuneConfig(cache_base_candidates=True, base_mode="imitation")
    config = FinetuneConfig(cache_base_candidates=True, base_mode="imitation", cache_refresh_per_step=32)
    assert config.cached_samples_per_state == config.selector.num_samples == 8
    assert FinetuneConfig(cache_base_candidates=True, base_mode="frozen", cache_samples=16).cached_samples_per_state == 16
    assert FinetuneConfig().cached_samples_per_state == 0


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("utd_ratio: 4\ncritic:\n  ensemble_size: 5\n")
    data = apply_overrides(load_yaml(path), ["critic.ensemble_size=3", "beta=0.7"])
    cfg = FinetuneConfig.model_validate(data)
    assert (cfg.utd_ratio, cfg.critic.ensemble_size, cfg.beta) == (4, 3, 0.7)
    with pytest.raises(ValueError, match="key.subkey=value"):
        apply_overrides({}, ["nonsense"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_yaml(bad)
