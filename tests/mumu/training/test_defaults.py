"""Per-profile training defaults: the paper's recipe for `full`, the tiny one for `tiny`, explicit flags win."""

from __future__ import annotations

from mumu.training.defaults import TRAIN_DEFAULTS, describe, fill_defaults, train_defaults


def test_full_keeps_the_papers_recipe_and_unknown_profiles_fall_back_to_it():
    assert TRAIN_DEFAULTS["full"].lr == 1e-4 and TRAIN_DEFAULTS["full"].batch_size == 4
    assert train_defaults("m2ugen-converted") == TRAIN_DEFAULTS["full"]


def test_only_missing_values_are_filled():
    got = fill_defaults({"lr": None, "batch_size": 2, "warmup_steps": None, "min_lr_ratio": None}, "tiny")
    tiny = TRAIN_DEFAULTS["tiny"]
    assert got == {"lr": tiny.lr, "batch_size": 2, "warmup_steps": tiny.warmup_steps,
                   "min_lr_ratio": tiny.min_lr_ratio}


def test_description_names_every_profile():
    text = describe()
    assert f"tiny: lr={TRAIN_DEFAULTS['tiny'].lr:g}" in text and "full: lr=0.0001" in text
