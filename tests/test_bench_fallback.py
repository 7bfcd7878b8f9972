"""The fallback benchmark: where the recipe's own critic rejects an endpoint, another recipe's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_fallback")


def test_the_fallback_is_taken_where_the_first_critic_or_confidence_fails_and_the_second_holds(bench):
    first = {"critic": np.array([5.0, -1.0, 5.0, -1.0, 0.5]), "p": np.array([0.99, 0.99, 0.5, 0.99, 0.95])}
    second = {"critic": np.zeros(5), "p": np.array([0.99, 0.99, 0.99, 0.3, 0.99])}
    # kept, critic rejects, own confidence fails, rejected but the fallback lost the class, below 1
    assert bench.fallback_taken(first, second, 0.0).tolist() == [False, True, True, False, False]
    assert bench.fallback_taken(first, second, 1.0).tolist() == [False, True, True, False, True]


def test_the_fallback_recipe_gets_the_recipe_s_critic_and_keeps_its_own_pull(bench, tmp_path):
    first = bench.the_recipe("realistic")
    second = bench.the_recipe("realistic-stochastic", critic_of=first)
    assert first.critic is not None and second.critic == first.critic
    assert (second.critic_steps, second.critic_step) == (first.critic_steps, first.critic_step)
    assert second.renoise and not first.renoise and second.sigma_max == 1.0
    assert bench.the_recipe("realistic-stochastic") == second  # shipped with that critic since
    bare = tmp_path / "bare.recipe"  # one without a critic is given the first's
    bare.write_text(json.dumps({k: v for k, v in second.to_dict().items()
                                if k not in ("critic", "critic_steps", "critic_step")}))
    assert bench.the_recipe(str(bare)).critic is None and bench.the_recipe(str(bare), critic_of=first) == second
    assert first.retry is None  # the first pull alone: the bench measures the choice the retry makes


def test_the_map_set_is_one_start_class_to_every_other_and_the_held_out_set_is_the_450(bench):
    m = bench.pairs_of("map", 0)
    assert len(m) == 180 and {t for _, t in m} == set(range(1, 10))
    h = bench.pairs_of("held_out", 0)
    assert len(h) == 450 and {i for i, _ in h} == set(range(200, 250))
