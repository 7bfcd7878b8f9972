"""A recipe's retry: where its critic rejects the finished endpoint, the trajectory goes back to its
start and traverses once more with a second pull's settings (the shipped `realistic` retries with the
stochastic pull)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from trav_gui.engine.core import traversal as engine
from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.data import datasets
from trav_gui.engine.models.errors import RecipeError
from trav_gui.engine.models.loading import list_models, load_recipe
from trav_gui.engine.models.recipes import Recipe, describe
from trav_gui.engine.realism import RealismScorer, confident_point

# A short schedule of the shipped pieces: anneal 5 steps, plateau of 2, finish at 0.3 and 0.1, 4 critic steps.
BASE = {"models": ("robust",), "prior": "score-mnist", "prior_weight": 0.15, "sigma_max": 0.5, "sigma_min": 0.3,
        "anneal_steps": 5, "step_scale": 3.0, "stop": "plateau", "patience": 2, "centre": True,
        "finish_sigmas": (0.3, 0.1), "critic": "critic-mnist", "critic_steps": 4}
SECOND = {"sigma_max": 1.0, "renoise": True}
FINISH = 3  # two denoisings and the critic's step


def _run(recipe: Recipe, x, targets, steps: int):
    frames = list(traverse([load_recipe(recipe)], x, targets, TraversalConfig(steps=steps, step_size=0.1, seed=4)))
    done = np.stack([f.done[0] for f in frames])
    return frames, np.where(done.any(0), done.argmax(0), -1)  # the step each trajectory is done at


@pytest.mark.parametrize("n", [3, 12], ids=["joint", "frozen-skipped"])
def test_a_rejected_endpoint_goes_back_to_the_start_and_the_second_pull_is_that_recipe_alone(n, monkeypatch):
    """retry_below 100 rejects every endpoint: each trajectory's frames are the first pull's up to its
    endpoint, then its start, then the frames of the recipe with the retry's settings alone."""
    monkeypatch.setattr(engine, "SKIP_FROZEN", True)
    x, labels = datasets.test_images("mnist", n)
    targets = (labels + 3) % 10
    first, first_done = _run(Recipe(**BASE), x, targets, 80)
    alone, alone_done = _run(Recipe(**{**BASE, **SECOND}), x, targets, 80)
    both, both_done = _run(Recipe(**BASE, retry=SECOND, retry_below=100.0), x, targets, 120)
    assert (first_done > 0).all() and (alone_done > 0).all()
    np.testing.assert_array_equal(both_done, first_done + 1 + alone_done)
    for i in range(n):
        end = first_done[i]
        for t in range(end + 1):
            # (a batch's calls split by pull: its convolutions differ from the batch's in the last digits)
            np.testing.assert_allclose(both[t].images[0, i], first[t].images[0, i], atol=1e-4)
        assert not both[end].done[0, i]
        np.testing.assert_array_equal(both[end + 1].images[0, i], x[i, 0])  # back at the start
        assert both[end + 1].l2[0, i] == 0
        for t in range(alone_done[i] + 1):
            np.testing.assert_allclose(both[end + 1 + t].images[0, i], alone[t].images[0, i], atol=1e-4)
            np.testing.assert_allclose(both[end + 1 + t].probs[0, i], alone[t].probs[0, i], atol=1e-4)
        np.testing.assert_array_equal(both[-1].images[0, i], both[both_done[i]].images[0, i])  # frozen after



def test_a_retry_s_critic_finish_takes_its_own_steps_and_the_first_pull_keeps_its_own():
    """``retry: {"critic_steps": 6}``: a retried trajectory's frames are those of the recipe with the
    retry's settings alone, its 6 critic steps included; the first pull's endpoint took the first pull's 4."""
    x, labels = datasets.test_images("mnist", 3)
    targets = (labels + 3) % 10
    longer = {**SECOND, "critic_steps": 6}
    first, first_done = _run(Recipe(**BASE), x, targets, 80)
    alone, alone_done = _run(Recipe(**{**BASE, **longer}), x, targets, 80)
    four, _ = _run(Recipe(**{**BASE, **SECOND}), x, targets, 80)
    both, both_done = _run(Recipe(**BASE, retry=longer, retry_below=100.0), x, targets, 120)
    np.testing.assert_array_equal(both_done, first_done + 1 + alone_done)
    for i in range(3):
        end = first_done[i]
        np.testing.assert_allclose(both[end].images[0, i], first[end].images[0, i], atol=1e-4)
        last = alone_done[i]
        np.testing.assert_allclose(both[end + 1 + last].images[0, i], alone[last].images[0, i], atol=1e-4)
    # the two critic finishes differ: the check above can tell 6 steps from 4
    ends = [alone[alone_done[i]].images[0, i] for i in range(3)]
    assert any(not np.allclose(e, four[alone_done[i]].images[0, i], atol=1e-3) for i, e in enumerate(ends))
    assert Recipe(**BASE, retry=longer).retry_recipe().critic_steps == 6

def test_an_endpoint_the_critic_accepts_is_kept_unless_unsure_and_a_run_without_room_is_not_retried():
    x, labels = datasets.test_images("mnist", 4)
    targets = (labels + 3) % 10
    first, first_done = _run(Recipe(**BASE), x, targets, 80)
    assert (first_done > 0).all()
    # retry_below -100: the critic accepts every endpoint; only one whose own p(target) fell below 0.9 goes back
    unsure = first[-1].probs[0, np.arange(4), targets] < 0.9
    assert unsure.any() and not unsure.all()  # both cases are here
    judged, _ = _run(Recipe(**BASE, retry=SECOND, retry_below=-100.0), x, targets, 80)
    for i in range(4):
        end = first_done[i]
        if unsure[i]:
            assert judged[end + 1].l2[0, i] == 0
        else:
            for a, b in zip(first, judged):
                np.testing.assert_allclose(b.images[0, i], a.images[0, i], atol=1e-4)
    # too few steps for the shortest retry (anneal, then the finish) after the earliest endpoint: none starts
    short = int(first_done.min()) + 1 + BASE["anneal_steps"] + FINISH - 1
    cramped, cramped_done = _run(Recipe(**BASE, retry=SECOND, retry_below=100.0), x, targets, short)
    reached = first_done <= short
    np.testing.assert_array_equal(cramped_done[reached], first_done[reached])
    for a, b in zip(first, cramped):
        np.testing.assert_allclose(b.images, a.images, atol=1e-6)


def test_a_retry_unfinished_at_the_last_step_ends_on_the_first_endpoint():
    """Room for the shortest retry, but this retry's plateau needs 40 steps: the run's last frame is
    the first endpoint again, not a half-made second one."""
    x, labels = datasets.test_images("mnist", 2)
    targets = (labels + 3) % 10
    first, first_done = _run(Recipe(**BASE), x, targets, 80)
    assert (first_done > 0).all()
    steps = int(first_done.max()) + 1 + BASE["anneal_steps"] + FINISH + 5
    slow = {**SECOND, "patience": 40}
    frames, _ = _run(Recipe(**BASE, retry=slow, retry_below=100.0), x, targets, steps)
    assert len(frames) == steps + 1 and not frames[-1].done.any()
    for i in range(2):
        end = first_done[i]
        assert frames[end + 1].l2[0, i] == 0  # it did go back to the start
        assert not np.allclose(frames[-2].images[0, i], first[end].images[0, i], atol=1e-3)  # mid-retry
        np.testing.assert_allclose(frames[-1].images[0, i], first[end].images[0, i], atol=1e-5)


def test_retry_keep_better_ends_on_the_endpoint_its_critic_finds_more_real():
    """Every endpoint retried (retry_below 100): with ``retry_keep_better`` each trajectory ends on its
    second endpoint unless the critic's logit of the first, which its classifiers were confident of, is
    higher; the frames up to there are the plain retry's."""
    import torch

    from trav_gui.engine.core.centring import centring_offsets, shift_batch

    x, labels = datasets.test_images("mnist", 12)
    targets = (labels + 3) % 10
    first, first_done = _run(Recipe(**BASE), x, targets, 80)
    plain, plain_done = _run(Recipe(**BASE, retry=SECOND, retry_below=100.0), x, targets, 120)
    better, better_done = _run(Recipe(**BASE, retry=SECOND, retry_below=100.0, retry_keep_better=True), x, targets,
                               120)
    np.testing.assert_array_equal(better_done, plain_done)
    guided = load_recipe(Recipe(**BASE))
    offsets = centring_offsets(torch.as_tensor(np.asarray(x)), 6)  # the recipe's max_centre_shift

    def seen(frames):
        with torch.no_grad():
            frames = shift_batch(torch.from_numpy(np.stack(frames)).reshape(12, *x.shape[1:]), offsets)
            p = torch.softmax(guided.classifier(frames), 1)[torch.arange(12), torch.as_tensor(targets).long()]
            return guided.critic(frames).reshape(-1).numpy(), p.numpy()

    one = [first[first_done[i]].images[0, i] for i in range(12)]
    two = [plain[plain_done[i]].images[0, i] for i in range(12)]
    c1, p1 = seen(one)
    c2, _ = seen(two)
    firsts = 0
    for i in range(12):
        end = plain_done[i]
        np.testing.assert_allclose(better[end - 1].images[0, i], plain[end - 1].images[0, i], atol=1e-5)
        keep_first = c1[i] > c2[i] and p1[i] >= 0.9
        np.testing.assert_allclose(better[end].images[0, i], one[i] if keep_first else two[i], atol=1e-4)
        np.testing.assert_allclose(better[-1].images[0, i], better[end].images[0, i], atol=1e-6)  # frozen after
        firsts += keep_first
    assert 0 < firsts < 12  # both kinds of ending happen here, so the test tells them apart
    assert "more real is kept" in describe(Recipe(**BASE, retry=SECOND, retry_keep_better=True))
    assert "retry_keep_better" not in Recipe(**BASE, retry=SECOND).to_dict()  # fingerprints of recipes without
    with pytest.raises(RecipeError, match="needs a retry"):
        Recipe(**BASE, retry_keep_better=True)


def test_critic_clean_sigma_sets_the_noise_level_the_critic_s_finish_is_cleaned_at():
    """Cleaned at the cascade's last σ (0.1 here) the frames are the default's to the bit; at 0.3 the
    critic-finished frames differ, and only from the critic's step on."""
    x, labels = datasets.test_images("mnist", 4)
    targets = (labels + 3) % 10
    plain, done = _run(Recipe(**BASE), x, targets, 80)
    same, _ = _run(Recipe(**BASE, critic_clean_sigma=0.1), x, targets, 80)
    other, other_done = _run(Recipe(**BASE, critic_clean_sigma=0.3), x, targets, 80)
    np.testing.assert_array_equal(np.stack([f.images for f in same]), np.stack([f.images for f in plain]))
    np.testing.assert_array_equal(other_done, done)
    assert (done > 0).all()
    for i in range(4):
        before = done[i] - 1  # the frame before the critic's step (the cascade's last)
        np.testing.assert_allclose(other[before].images[0, i], plain[before].images[0, i], atol=1e-6)
    assert any(not np.allclose(other[done[i]].images[0, i], plain[done[i]].images[0, i], atol=1e-3) for i in range(4))
    assert "denoised again at sigma 0.3" in describe(Recipe(**BASE, critic_clean_sigma=0.3))
    assert "critic_clean_sigma" not in Recipe(**BASE).to_dict()  # the fingerprints of recipes without it hold
    with pytest.raises(RecipeError, match="needs a critic"):
        Recipe(**{**BASE, "critic": None}, critic_clean_sigma=0.1)
    with pytest.raises(RecipeError, match="critic_clean_sigma must be"):
        Recipe(**BASE, critic_clean_sigma=0.0)


def test_a_recipe_with_a_retry_round_trips_and_one_without_keeps_its_settings():
    with_retry = Recipe(**BASE, retry={"renoise": True, "sigma_max": 1.0}, retry_below=-4.0)
    again = Recipe.from_dict(json.loads(json.dumps(with_retry.to_dict())))
    assert again == with_retry and hash(again) == hash(with_retry)
    assert with_retry.retry_recipe() == Recipe(**{**BASE, "sigma_max": 1.0, "renoise": True})
    assert with_retry.first_pull() == Recipe(**BASE) and Recipe(**BASE).first_pull() == Recipe(**BASE)
    assert "retry" not in Recipe(**BASE).to_dict()  # the fingerprints of recipes without one hold
    assert "once more from the start" in describe(with_retry) and "-4" in describe(with_retry)


def test_the_shipped_realistic_recipe_retries_with_the_shipped_stochastic_pull():
    """`realistic`'s retry is `realistic-stochastic`'s pull: the two files differ by nothing else."""
    entries = {e.name: e for e in list_models()}
    plain = json.loads(entries["realistic"].path.read_text())
    stochastic = json.loads(entries["realistic-stochastic"].path.read_text())
    retry = plain.pop("retry")
    plain.pop("retry_below")
    assert retry
    # the critic and its finish too; the retry's critic finish may take more steps than the first pull's
    longer = retry.pop("critic_steps", plain["critic_steps"])
    assert longer >= plain["critic_steps"]
    # read as recipes: the retry's critic_pull 0 (the critic steers the first pull only) is the setting left out
    assert (Recipe.from_dict({**plain, **retry}).to_dict()
            == Recipe.from_dict({**stochastic, "critic_steps": plain["critic_steps"]}).to_dict())
    assert stochastic["critic_steps"] in (plain["critic_steps"], longer)
    assert "retry" in entries["realistic"].card.description


def test_a_run_too_short_for_the_retry_says_so(tmp_path, capsys):
    from trav_gui.cli import main
    from trav_gui.engine.models.recipes import retry_note

    recipe = Recipe(**BASE, retry=SECOND, retry_below=-4.0)
    shortest = 2 * (BASE["anneal_steps"] + FINISH) + 1  # the shortest first pull, its restart, the shortest retry
    assert retry_note("r", recipe, shortest) is None and retry_note("r", Recipe(**BASE), 3) is None
    assert f"{shortest - 1} steps leave no room" in retry_note("r", recipe, shortest - 1)
    assert retry_note("r", recipe, 200, measured_steps=300).endswith(
        "200 steps leave too little room for that: give it 300 (its card's figures are at 300 steps)")
    assert retry_note("r", recipe, shortest - 1, measured_steps=10).endswith(f"give it {shortest}")
    assert main(["traverse", "--model", "realistic", "--index", "3", "--target", "6", "--steps", "5",
                 "--out", str(tmp_path / "run")]) == 0
    assert "note: realistic goes back to its start where its critic rejects the endpoint; 5 steps leave no room" \
        in capsys.readouterr().err


def test_the_run_history_marks_the_step_a_retry_went_back_to_the_start(qtbot):
    """The app draws a marker where a recipe's trajectory, having moved, is at its start again."""
    from trav_gui.engine.runs.history import RunHistory
    from trav_gui.qt.plots import ComparisonView

    x, labels = datasets.test_images("mnist", 1)
    target = (labels + 3) % 10
    _, first_done = _run(Recipe(**BASE), x, target, 80)
    plain = Recipe(**BASE)
    frames = list(traverse([load_recipe(Recipe(**BASE, retry=SECOND, retry_below=100.0)), load_recipe(plain)], x,
                           target, TraversalConfig(steps=120, step_size=0.1, seed=4)))
    history = RunHistory(2, int(target[0]))
    for f in frames:
        history.append(f)
    assert history.restart_steps() == [int(first_done[0]) + 1, None]  # the recipe without a retry never goes back
    # The most realistic frame is the retry's own: its fog (made here the closest to real digits) is never marked.
    restart = int(first_done[0]) + 1
    realism = RealismScorer(dataset="mnist").score(history.images, int(target[0]))
    ratio = realism.nn_ratio.copy()
    ratio[restart + 1:restart + 4, 0] = 0.01
    history.add_realism(np.arange(len(history)), dataclasses.replace(realism, nn_ratio=ratio))
    again = restart + confident_point(history.probs[restart:, 0], int(target[0]))
    best = history.most_realistic()[0]
    assert best is not None and best >= again > restart + 3
    view = ComparisonView()
    qtbot.addWidget(view)
    view.set_models(["retrying", "plain"], ["", ""])
    view.begin_run(int(target[0]), {}, TraversalConfig(steps=120))
    view.draw_curves(history, TraversalConfig(steps=120))
    line = view.columns[0].restart_line
    assert line.isVisible() and line.value() == first_done[0] + 1
    assert line.label.format == f"↺ retry at {first_done[0] + 1}"
    assert not view.columns[1].restart_line.isVisible()
