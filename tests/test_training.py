"""Training and evaluation on a few hundred samples: seconds, not minutes."""

import json
import os
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training import evaluate, train
from trav_gui.engine.models.errors import PriorLoadError
from trav_gui.engine.models.loading import list_models, load_model
from trav_gui.paths import models_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_root():
    root = Path(os.environ.get("TRAV_GUI_DATA") or REPO.parent / "shared" / "data")
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST training set not found under {root} (set TRAV_GUI_DATA)")
    return root


def _train(tmp_path, mnist_root, *extra):
    out = tmp_path / "m.safetensors"
    args = ["--kind", "robust", "--epochs", "2", "--limit", "256", "--batch-size", "64",
            "--attack-steps", "2", "--out", str(out), "--seed", "1", "--data-root", str(mnist_root),
            "--curve-samples", "50", "--no-eval", *extra]
    train.main(args)
    return out


def _interrupted_after_first_checkpoint(monkeypatch, module, run) -> None:
    """Call ``run`` as if the user pressed Ctrl+C right after ``module``'s first checkpoint was written."""
    real_save = module.save_checkpoint

    def save_then_interrupt(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(module, "save_checkpoint", real_save)


def test_training_writes_weights_card_curve_and_checkpoint(tmp_path, mnist_root):
    out = _train(tmp_path, mnist_root)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["kind"] == "robust" and card["architecture"] == "small_cnn"
    t = card["training"]
    assert (t["eps"], t["attack_steps"], t["epochs"], t["seed"], t["train_samples"]) == (2.0, 2, 2, 1, 256)
    assert len(t["data_sha256"]) == 64 and t["torch"] == torch.__version__
    assert [row["epoch"] for row in card["learning_curve"]] == [1, 2]
    assert out.with_suffix(".curve.csv").read_text().splitlines()[0].startswith("epoch,loss")
    assert (tmp_path / "m.safetensors.ckpt" / "state.json").is_file()
    assert load_model(out)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_resume_after_an_interrupt_matches_an_uninterrupted_run(tmp_path, mnist_root, monkeypatch):
    straight = _train(tmp_path / "a", mnist_root)
    _interrupted_after_first_checkpoint(monkeypatch, train, lambda: _train(tmp_path / "b", mnist_root))
    ckpt = tmp_path / "b" / "m.safetensors.ckpt"
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 1
    resumed = _train(tmp_path / "b", mnist_root, "--resume", str(ckpt))
    a, b = load_file(str(straight)), load_file(str(resumed))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_missing_data_root_is_a_clear_exit(tmp_path):
    with pytest.raises(SystemExit, match="MNIST not found.*--download"):
        train.main(["--kind", "standard", "--epochs", "1", "--out", str(tmp_path / "m.safetensors"),
                    "--data-root", str(tmp_path / "nowhere")])


def test_damaged_data_root_is_a_clear_exit_saying_how_to_fix_it(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x12\x34\x56\x78" * 100)  # a wrong magic number
    with pytest.raises(SystemExit, match="MNIST under .* is damaged.*Delete that folder.*--download"):
        train.main(["--kind", "standard", "--epochs", "1", "--out", str(tmp_path / "m.safetensors"),
                    "--data-root", str(tmp_path / "data")])
    assert not (tmp_path / "m.safetensors").exists()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        train.main(["--kind", "robust", "--out", str(tmp_path / "m.pt")])
    with pytest.raises(SystemExit):
        train.main(["--kind", "robust", "--epochs", "0", "--out", str(tmp_path / "m.safetensors")])


@pytest.fixture(scope="module")
def small_trained(tmp_path_factory, mnist_root):
    """A standard model trained for one epoch on 1,000 digits (about 90 % clean)."""
    out = tmp_path_factory.mktemp("std") / "s.safetensors"
    train.main(["--kind", "standard", "--epochs", "2", "--limit", "1000", "--batch-size", "50",
                "--out", str(out), "--seed", "0", "--data-root", str(mnist_root),
                "--curve-samples", "20", "--no-eval"])
    return out


def test_attack_lowers_accuracy_and_robust_never_exceeds_clean(small_trained):
    model = load_model(small_trained)
    r = evaluate.evaluate(model, eps=2.0, attack_steps=10, restarts=2, curve_eps=(1.0, 3.0),
                          limit=200, apgd_limit=100, progress=False)
    clean = r["clean_accuracy"]
    by = {(x["eps"], x["attack"].startswith("worst")): x for x in r["robust"]}
    assert clean > 0.7
    assert by[(2.0, False)]["accuracy"] < clean - 0.3  # a standard model falls to L2 eps 2
    assert all(x["accuracy"] <= clean for x in r["robust"])
    assert by[(1.0, False)]["accuracy"] >= by[(2.0, False)]["accuracy"] >= by[(3.0, False)]["accuracy"]
    worst = by[(2.0, True)]
    assert worst["samples"] == 100 and worst["accuracy"] <= worst["pgd_accuracy_same_samples"]


def test_a_worst_case_on_more_digits_also_reports_the_cards_first_digits(small_trained, monkeypatch):
    monkeypatch.setattr(evaluate, "CARD_SAMPLES", 30)
    # Known survivors instead of attacks: PGD leaves every digit but each third; APGD then fools the first 10 and all after the 30th.
    monkeypatch.setattr(evaluate, "pgd_survivors", lambda model, x, y, *a, **k: torch.arange(len(y)) % 3 != 0)
    monkeypatch.setattr(evaluate, "apgd_survivors", lambda model, x, y, alive, *a, **k: alive & (torch.arange(len(y)) >= 10) & (torch.arange(len(y)) < 30))
    model = load_model(small_trained)
    r = evaluate.evaluate(model, curve_eps=(), limit=60, apgd_limit=60, progress=False)
    worst = [x for x in r["robust"] if x["attack"].startswith("worst")]
    assert [x["samples"] for x in worst] == [60, 30] and "first 30 test digits" in worst[1]["attack"]
    assert (worst[0]["accuracy"], worst[0]["pgd_accuracy_same_samples"]) == (14 / 60, 40 / 60)
    assert (worst[1]["accuracy"], worst[1]["pgd_accuracy_same_samples"]) == (14 / 30, 20 / 30)
    alone = evaluate.evaluate(model, curve_eps=(), limit=30, apgd_limit=30, progress=False)
    assert [x["samples"] for x in alone["robust"] if x["attack"].startswith("worst")] == [30]  # no second row


def test_evaluate_shift_attacks_the_test_digits_moved_in_the_four_diagonals(small_trained, monkeypatch):
    seen = {}
    monkeypatch.setattr(evaluate, "clean_accuracy", lambda model, x, y: seen.setdefault("x", x) is x and 0.5)
    r = evaluate.evaluate(load_model(small_trained), attack_steps=1, restarts=1, curve_eps=(), limit=8,
                          apgd_limit=0, progress=False, shift=3)
    x0, _ = evaluate.test_images("mnist", 8)
    moved = seen["x"]
    assert r["test_shift_px"] == 3 and moved.shape == x0.shape
    for i, (dy, dx) in enumerate([(3, 3), (-3, -3), (3, -3), (-3, 3)] * 2):
        assert torch.equal(moved[i], torch.roll(x0[i], (dy, dx), (-2, -1)) * _uncovered(dy, dx))
    assert "test_shift_px" not in evaluate.evaluate(load_model(small_trained), attack_steps=1, restarts=1,
                                                    curve_eps=(), limit=8, apgd_limit=0, progress=False)
    with pytest.raises(SystemExit):
        evaluate.main([str(small_trained), "--shift", "3", "--write-card"])


def _uncovered(dy: int, dx: int) -> torch.Tensor:
    """1 where an image moved by (dy, dx) still shows its own pixels, 0 on the zero-filled border."""
    mask = torch.zeros(28, 28)
    mask[max(dy, 0): 28 + min(dy, 0), max(dx, 0): 28 + min(dx, 0)] = 1
    return mask


def test_evaluate_writes_the_card_and_keeps_sha_valid(small_trained, capsys):
    evaluate.main([str(small_trained), "--attack-steps", "3", "--restarts", "1", "--limit", "50",
                   "--apgd-limit", "0", "--curve-eps", "--write-card"])
    assert "clean accuracy" in capsys.readouterr().out
    card = json.loads(small_trained.with_suffix(".json").read_text())
    assert card["evaluation"]["test_samples"] == 50
    load_model(small_trained)  # the rewritten card's sha256 still matches


@pytest.mark.parametrize("name", ["robust", "standard", "fashion-standard", "fashion-robust", "judge-standard",
                                  "robust-eps1", "robust-eps3", "robust-eps4", "robust-shift", "robust-shift3", "realistic",
                                  "realistic-stochastic", "robust-shift3-trades",
                                  "colored-robust", "colored-standard", "colored-judge"])
def test_shipped_card_clean_accuracy_is_reproduced_exactly(name):
    if not any((models_dir() / f"{name}{ext}").exists() for ext in (".safetensors", ".recipe")):
        pytest.skip(f"{name} not shipped yet")
    entry = next(e for e in list_models() if e.name == name)
    card = entry.card
    x, y = evaluate.test_images(entry.dataset)
    assert evaluate.clean_accuracy(load_model(name), x, y) == card.evaluation.clean_accuracy
    assert card.evaluation.test_samples == 10000


def test_random_shift_moves_each_image_by_at_most_its_pixels_with_zero_fill():
    x = torch.zeros(200, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    moved = train.random_shift(x, 2, torch.Generator().manual_seed(0))
    pos = torch.stack([(m[0] == 1).nonzero()[0] for m in moved])
    offsets = pos - 14
    assert offsets.abs().max() == 2 and len({tuple(o.tolist()) for o in offsets}) == 25  # all 5x5 shifts
    # Colour images: all three channels move together.
    rgb = torch.zeros(50, 3, 28, 28)
    rgb[:, :, 14, 14] = torch.tensor([0.2, 0.5, 1.0])[:, None].expand(3, 50).T
    moved_rgb = train.random_shift(rgb, 3, torch.Generator().manual_seed(1))
    assert moved_rgb.shape == rgb.shape
    for m in moved_rgb:
        spots = [(m[c] > 0).nonzero() for c in range(3)]
        assert all(len(s) == 1 for s in spots) and spots[0].equal(spots[1]) and spots[1].equal(spots[2])
        assert sorted(m[:, spots[0][0, 0], spots[0][0, 1]].tolist()) == pytest.approx([0.2, 0.5, 1.0])
    assert torch.equal(moved.sum((1, 2, 3)), torch.ones(200))  # nothing lost, nothing invented
    edge = torch.ones(1, 1, 28, 28)
    shifted = train.random_shift(edge, 3, torch.Generator().manual_seed(1))
    assert shifted.sum() < 28 * 28 or torch.equal(shifted, edge)  # zero-filled border unless (0, 0)
    assert train.random_shift(x, 0, torch.Generator()) is x


def test_shift_fraction_moves_only_that_share_and_leaves_the_default_draws_alone():
    x = torch.zeros(2000, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    half = train.random_shift(x, 3, torch.Generator().manual_seed(0), 0.25)
    in_place = (half[:, 0, 14, 14] == 1).float().mean().item()
    # 75 % stay; of the 25 % moved, 1 in 49 is moved by (0, 0).
    assert in_place == pytest.approx(0.75 + 0.25 / 49, abs=0.03)
    assert torch.equal(half.sum((1, 2, 3)), torch.ones(2000))  # the moved ones are moved, not lost
    everything = train.random_shift(x, 3, torch.Generator().manual_seed(0))
    assert torch.equal(train.random_shift(x, 3, torch.Generator().manual_seed(0), 1.0), everything)
    assert (everything[:, 0, 14, 14] == 1).float().mean().item() < 0.05
    with pytest.raises(SystemExit):
        train.main(["--kind", "robust", "--shift", "3", "--shift-fraction", "0", "--out", "x.safetensors"])


def test_init_starts_from_given_weights_and_the_card_records_init_and_shift(tmp_path, mnist_root):
    out = _train(tmp_path, mnist_root, "--init", "robust", "--shift", "2", "--shift-fraction", "0.5",
                 "--epochs", "1", "--lr", "1e-6")
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["init"] == "robust" and card["training"]["shift_augmentation_px"] == 2
    assert card["training"]["shift_fraction"] == 0.5
    # A learning rate of 1e-6 for 4 steps: still the shipped robust model, not a fresh one.
    x = torch.rand(8, 1, 28, 28)
    assert torch.allclose(load_model(out)(x), load_model("robust")(x), atol=0.05)
    with pytest.raises(SystemExit):
        train.main(["--kind", "robust", "--shift", "9", "--out", str(tmp_path / "x.safetensors")])


def test_train_prior_writes_a_loadable_prior_that_denoises(tmp_path, mnist_root):
    from training import train_prior
    from trav_gui.engine.models.priors import load_prior

    out = tmp_path / "score.safetensors"
    train_prior.main(["--kind", "score", "--epochs", "2", "--limit", "512", "--batch-size", "64",
                      "--data-root", str(mnist_root), "--out", str(out), "--eval-samples", "200"])
    _prior, card = load_prior(out)
    assert card.prior == "score" and card.role == "prior" and card.dataset == "mnist"
    mse = card.evaluation.denoising_mse_per_pixel
    assert mse["0.3"] < 0.3**2  # better than not denoising at all
    assert [row["epoch"] for row in card.to_json()["learning_curve"]] == [1, 2]
    assert (tmp_path / "score.safetensors.ckpt" / "state.json").is_file()


def test_a_classifier_with_ema_writes_and_measures_the_averaged_weights_and_resumes_them(
        tmp_path, mnist_root, monkeypatch):
    straight = _train(tmp_path / "a", mnist_root, "--ema", "0.9")
    card = json.loads(straight.with_suffix(".json").read_text())
    assert card["training"]["ema_decay"] == 0.9
    written = load_file(str(straight))
    ckpt = tmp_path / "a" / "m.safetensors.ckpt"
    last, averaged = load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "ema.safetensors"))
    for key in written:  # what is written is the average, not the last step's weights
        torch.testing.assert_close(written[key], averaged[f"module.{key}"], rtol=0, atol=0)
    assert any(not torch.equal(written[k], last[k]) for k in written)
    # the learning curve measures the written (averaged) weights
    model = load_model(straight)
    test = train.load_training_set("mnist", False, str(mnist_root), False)
    assert card["learning_curve"][-1]["clean_acc"] == round(evaluate.clean_accuracy(model, test[0][:50], test[1][:50]), 5)

    _interrupted_after_first_checkpoint(monkeypatch, train, lambda: _train(tmp_path / "b", mnist_root, "--ema", "0.9"))
    resumed = load_file(str(_train(tmp_path / "b", mnist_root, "--ema", "0.9", "--resume",
                                   str(tmp_path / "b" / "m.safetensors.ckpt"))))
    for key in written:  # the average is restored with the model, not restarted
        torch.testing.assert_close(written[key], resumed[key], rtol=0, atol=1e-6)
    with pytest.raises(SystemExit):
        train.parse_args(["--kind", "robust", "--ema", "1.0", "--out", "m.safetensors"])


def test_eval_eps_measures_the_curve_and_the_final_evaluation_at_another_radius_than_training(
        tmp_path, mnist_root, monkeypatch):
    radii, final_argv = [], []
    real_pgd = evaluate.pgd_accuracy

    def recording_pgd(model, x, y, eps, **kwargs):
        radii.append(eps)
        return real_pgd(model, x, y, eps=eps, **kwargs)

    monkeypatch.setattr(evaluate, "pgd_accuracy", recording_pgd)
    monkeypatch.setattr(evaluate, "main", final_argv.extend)
    out = tmp_path / "m.safetensors"
    train.main(["--kind", "robust", "--epochs", "2", "--limit", "128", "--batch-size", "64", "--attack-steps", "2",
                "--eps", "2.5", "--eval-eps", "1", "--out", str(out), "--seed", "1", "--data-root", str(mnist_root),
                "--curve-samples", "20"])
    assert radii == [1.0, 1.0]  # one PGD-20 curve point per epoch, at the measuring radius
    t = json.loads(out.with_suffix(".json").read_text())["training"]
    assert (t["eps"], t["curve_eps"], t["attack_step_size"]) == (2.5, 1.0, 2.5 / 4)  # the attack keeps --eps
    assert final_argv[final_argv.index("--eps") + 1] == "1.0"
    default = train.parse_args(["--kind", "robust", "--eps", "3", "--out", "m.safetensors"])
    assert default.eval_eps == 3.0
    with pytest.raises(SystemExit):
        train.parse_args(["--kind", "robust", "--eval-eps", "0", "--out", "m.safetensors"])


def test_weight_perturbation_moves_each_weight_layer_up_the_loss_by_gamma_of_its_norm():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = lambda: torch.nn.functional.cross_entropy(model(x), y)
    clean_loss = loss().item()
    moved = train.weight_perturbation(model, loss(), 0.05)
    assert [w.shape for w, _ in moved] == [(5, 6), (3, 5)]  # the matrices, not the biases
    after = model.state_dict()
    for key in ("0.bias", "2.bias"):
        assert torch.equal(after[key], before[key])
    for key in ("0.weight", "2.weight"):
        change = (after[key] - before[key]).norm() / before[key].norm()
        assert change.item() == pytest.approx(0.05, rel=1e-4)
    assert loss().item() > clean_loss  # up the loss, not down
    train.take_back(moved)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=1e-7)


def test_awp_training_takes_its_steps_at_perturbed_weights_and_says_so_in_the_card(tmp_path, mnist_root):
    # at a tiny learning rate the weights barely move, so a perturbation left in place (1 % of each
    # layer's norm per step) would show; taken back after each backward pass, only the steps differ
    plain = _train(tmp_path / "a", mnist_root, "--loss", "trades", "--lr", "1e-7")
    awp = _train(tmp_path / "b", mnist_root, "--loss", "trades", "--lr", "1e-7", "--awp", "0.01")
    assert json.loads(awp.with_suffix(".json").read_text())["training"]["awp_gamma"] == 0.01
    assert "awp_gamma" not in json.loads(plain.with_suffix(".json").read_text())["training"]
    a, b = load_file(str(plain)), load_file(str(awp))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the gradients were taken elsewhere
    for k in a:
        assert (a[k] - b[k]).norm() <= 1e-4 * a[k].norm() + 1e-5
    for bad in (["--awp", "0.01", "--kind", "standard"], ["--awp", "0.5", "--kind", "robust"]):
        with pytest.raises(SystemExit):
            train.parse_args([*bad, "--out", "m.safetensors"])


def test_a_prior_with_ema_writes_the_averaged_weights_and_resumes_them(tmp_path, mnist_root, monkeypatch):
    from training import train_prior

    def run(folder, *extra):
        out = folder / "score.safetensors"
        train_prior.main(["--kind", "score", "--epochs", "2", "--limit", "256", "--batch-size", "64",
                          "--ema", "0.9", "--clip-grad", "1.0", "--data-root", str(mnist_root),
                          "--out", str(out), "--eval-samples", "50", *extra])
        return out

    straight = run(tmp_path / "a")
    card = json.loads(straight.with_suffix(".json").read_text())
    assert card["training"]["ema_decay"] == 0.9 and card["training"]["clip_grad_norm"] == 1.0
    written = load_file(str(straight))
    ckpt = tmp_path / "a" / "score.safetensors.ckpt"
    last, averaged = load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "ema.safetensors"))
    for key in written:  # what is written is the average, not the last step's weights
        torch.testing.assert_close(written[key], averaged[f"module.{key}"], rtol=0, atol=0)
    assert any(not torch.equal(written[k], last[k]) for k in written if written[k].is_floating_point())

    _interrupted_after_first_checkpoint(monkeypatch, train_prior, lambda: run(tmp_path / "b"))
    resumed = load_file(str(run(tmp_path / "b", "--resume", str(tmp_path / "b" / "score.safetensors.ckpt"))))
    for key in written:  # the average is restored with the model, not restarted
        torch.testing.assert_close(written[key], resumed[key], rtol=0, atol=1e-6)
    with pytest.raises(SystemExit):
        train_prior.parse_args(["--kind", "score", "--ema", "1.0", "--out", "p.safetensors"])
    (ckpt / "ema.safetensors").unlink()  # a checkpoint written without --ema, resumed with it: one clear line
    with pytest.raises(SystemExit, match="no ema.safetensors.*without --ema"):
        run(tmp_path / "a", "--resume", str(ckpt))


def test_a_wider_score_prior_records_its_width_and_loads_at_it(tmp_path, mnist_root):
    from training import train_prior
    from trav_gui.engine.models.priors import load_prior

    out = tmp_path / "wide.safetensors"
    train_prior.main(["--kind", "score", "--width", "48", "--epochs", "1", "--limit", "128", "--batch-size", "64",
                      "--data-root", str(mnist_root), "--out", str(out), "--eval-samples", "50"])
    prior, card = load_prior(out)
    assert card.width == 48 and prior.inc[0].out_channels == 48
    assert sum(p.numel() for p in prior.parameters()) > 2 * sum(
        p.numel() for p in load_prior("score-mnist")[0].parameters())  # the shipped one is width 32
    # A card whose width is not its weights' is refused in one line, not loaded half-right.
    card_json = json.loads(out.with_suffix(".json").read_text())
    out.with_suffix(".json").write_text(json.dumps({**card_json, "width": 32}))
    with pytest.raises(PriorLoadError, match="not a score prior"):
        load_prior(out)
    with pytest.raises(SystemExit):
        train_prior.parse_args(["--kind", "score", "--width", "0", "--out", str(out)])


def test_eps_warmup_ramps_the_attack_radius_linearly_then_holds_it():
    args = train.parse_args(["--kind", "robust", "--epochs", "4", "--eps-warmup", "2", "--out", "m.safetensors"])
    per_epoch = 10
    scales = [train.eps_scale_at(args, i, per_epoch) for i in range(4 * per_epoch)]
    assert scales[0] == pytest.approx(1 / 20) and scales[9] == pytest.approx(0.5)
    assert scales[19] == 1.0 and set(scales[19:]) == {1.0}
    assert all(a < b for a, b in pairwise(scales[:20]))  # strictly rising during the warm-up
    plain = train.parse_args(["--kind", "robust", "--epochs", "4", "--out", "m.safetensors"])
    assert {train.eps_scale_at(plain, i, per_epoch) for i in range(40)} == {1.0}
    with pytest.raises(SystemExit):
        train.parse_args(["--kind", "robust", "--epochs", "2", "--eps-warmup", "3", "--out", "m.safetensors"])


def test_eps_warmup_is_recorded_on_the_card(tmp_path, mnist_root):
    out = _train(tmp_path, mnist_root, "--eps-warmup", "1")
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["eps_warmup_epochs"] == 1


def test_the_trades_attack_ascends_the_divergence_from_the_clean_prediction():
    from trav_gui.engine.core.attacks import pgd
    from trav_gui.engine.core.steps import L2Step
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.nn.init.normal_(model[1].weight, std=0.3)
    x, y = torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)
    divergence = train.trades_divergence(model, x)

    def measured(z):  # the divergence of z's prediction from x's, measured (no graph kept)
        with torch.no_grad():
            return float(divergence(model(z)))

    assert measured(x) == pytest.approx(0.0, abs=1e-5)
    step = L2Step(0.5, 2.0)
    start = pgd(model, x, y, step, 0, generator=torch.Generator().manual_seed(3), loss=divergence)
    adv = pgd(model, x, y, step, 10, generator=torch.Generator().manual_seed(3), loss=divergence)
    assert measured(adv) > 2 * measured(start) > 0
    # the given objective is the one ascended: ascending its negative brings a far start back toward x's prediction
    far = L2Step(0.25, 8.0)
    start = pgd(model, x, y, far, 0, generator=torch.Generator().manual_seed(3))
    back = pgd(model, x, y, far, 20, generator=torch.Generator().manual_seed(3), loss=lambda z: -divergence(z))
    assert measured(back) < 0.5 * measured(start)
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= 2.0 + 1e-4


def test_trades_training_is_its_own_and_recorded_on_the_card(tmp_path, mnist_root):
    madry = load_file(str(_train(tmp_path / "madry", mnist_root)))
    out = _train(tmp_path / "trades", mnist_root, "--loss", "trades", "--trades-beta", "3")
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["trades_beta"] == 3.0 and card["training"]["recipe"].startswith("TRADES")
    assert not torch.equal(load_file(str(out))["classifier.3.weight"], madry["classifier.3.weight"])
    assert "trades_beta" not in json.loads((tmp_path / "madry" / "m.json").read_text())["training"]
    for bad in (["--kind", "standard", "--loss", "trades"], ["--kind", "robust", "--loss", "trades", "--trades-beta", "0"]):
        with pytest.raises(SystemExit):
            train.parse_args([*bad, "--out", "m.safetensors"])


def test_train_critic_writes_a_critic_of_the_recipe_s_endpoints_and_resumes_them(tmp_path, mnist_root):
    from training import train_critic
    from trav_gui.engine.models.priors import RealismCritic, load_prior

    out = tmp_path / "critic.safetensors"
    args = ["--recipe", "realistic", "--train-digits", "2", "--chunk", "1", "--epochs", "1", "--eps", "0.5",
            "--data-root", str(mnist_root), "--out", str(out)]
    train_critic.main(args)
    critic, card = load_prior(out)
    assert isinstance(critic, RealismCritic) and card.prior == "critic" and card.role == "prior"
    extra = card.to_json()
    assert extra["critic_of"]["recipe"] == "realistic" and extra["critic_of"]["endpoints"] == 18  # 2 starts x 9
    assert 0.0 <= extra["held_out"]["accuracy"] <= 1.0 and extra["held_out"]["held_out_images"] == 8  # 20 % of 36
    chunks = sorted((tmp_path / "critic.safetensors.ckpt").glob("endpoints_*.npz"))
    assert [c.name for c in chunks] == ["endpoints_0_1.npz", "endpoints_1_2.npz"]
    stamps = [c.stat().st_mtime_ns for c in chunks]
    sha = card.sha256
    train_critic.main([*args, "--resume"])  # the endpoints are read back, not traversed again
    assert [c.stat().st_mtime_ns for c in chunks] == stamps
    assert load_prior(out)[1].sha256 == sha  # the same endpoints and seed: the same critic
    train_critic.main([*args[:3], "3", *args[4:], "--resume"])  # more starts: only the one added is traversed
    assert [c.stat().st_mtime_ns for c in chunks] == stamps and (out.parent / "critic.safetensors.ckpt" /
                                                                 "endpoints_2_3.npz").is_file()
    assert load_prior(out)[1].to_json()["critic_of"]["endpoints"] == 27
    stamp = out.parent / "critic.safetensors.ckpt" / "endpoints.json"
    made = json.loads(stamp.read_text())
    made["chunks"]["endpoints_0_1.npz"] = "0" * 64  # made from other starts, as far as the stamp knows
    stamp.write_text(json.dumps(made))
    train_critic.main([*args, "--resume"])
    assert chunks[0].stat().st_mtime_ns != stamps[0] and chunks[1].stat().st_mtime_ns == stamps[1]  # traversed again
    with pytest.raises(SystemExit, match="another recipe or in other chunks"):  # stale endpoints are not reused
        train_critic.main([*args[:5], "2", *args[6:], "--resume"])


def test_train_critic_blur_writes_a_critic_that_sees_its_input_blurred(tmp_path, mnist_root):
    from training import train_critic
    from trav_gui.engine.models.priors import load_prior

    out = tmp_path / "blurred.safetensors"
    train_critic.main(["--recipe", "realistic", "--train-digits", "2", "--chunk", "2", "--epochs", "1", "--eps", "0.5",
                       "--blur", "1.5", "--data-root", str(mnist_root), "--out", str(out)])
    critic, card = load_prior(out)
    assert critic.blur == 1.5 and card.blur == 1.5 and "blurred by 1.5 px" in card.description
    assert card.to_json()["rebuild"][-1].endswith("--blur 1.5")
    for bad in ("-1", "9"):
        with pytest.raises(SystemExit):
            train_critic.parse_args(["--blur", bad, "--out", "c.safetensors"])


def test_train_critic_also_critic_adds_the_endpoints_a_first_critic_finished(tmp_path, mnist_root):
    from training import train_critic
    from trav_gui.engine.models.priors import load_prior

    first = tmp_path / "first.safetensors"
    base = ["--recipe", "realistic", "--train-digits", "2", "--chunk", "2", "--epochs", "1", "--eps", "0.5",
            "--data-root", str(mnist_root)]
    train_critic.main([*base, "--out", str(first)])
    second = tmp_path / "second.safetensors"
    shutil.copytree(tmp_path / "first.safetensors.ckpt", tmp_path / "second.safetensors.ckpt")  # its first round
    train_critic.main([*base, "--out", str(second), "--also-critic", str(first), "--resume"])
    extra = load_prior(second)[1].to_json()
    assert extra["critic_of"]["endpoints"] == 36 and extra["critic_of"]["also_critic"] == str(first)  # 18 + 18
    assert extra["held_out"]["held_out_images"] == 15  # 20 % of 36 + 36
    assert extra["rebuild"][0].endswith(f"--also-critic {first}")
    with np.load(tmp_path / "second.safetensors.ckpt" / "endpoints_0_2.npz") as a, \
            np.load(tmp_path / "second.safetensors.ckpt" / "with-first" / "endpoints_0_2.npz") as b:
        assert a["last"].shape == b["last"].shape == (18, 28, 28)
        assert not np.array_equal(a["last"], b["last"])  # the first critic's finish moved them
    with pytest.raises(SystemExit, match="--also-critic nowhere"):
        train_critic.main([*base, "--out", str(tmp_path / "x.safetensors"), "--also-critic", "nowhere"])


def test_train_critic_fine_tunes_on_new_starts_with_the_retry_pull_s_endpoints(tmp_path, mnist_root):
    from training import train_critic
    from trav_gui.engine.models.priors import load_prior

    base = ["--recipe", "realistic", "--train-digits", "2", "--chunk", "2", "--epochs", "1", "--eps", "0.5",
            "--data-root", str(mnist_root)]
    first = tmp_path / "first.safetensors"
    train_critic.main([*base, "--out", str(first)])
    tuned = tmp_path / "tuned.safetensors"
    train_critic.main([*base, "--first-digit", "5", "--also-retry", "--init", str(first), "--lr", "1e-9",
                       "--out", str(tuned)])
    card = load_prior(tuned)[1].to_json()
    assert card["critic_of"]["first_digit"] == 5 and card["critic_of"]["endpoints"] == 36  # 2 starts x 9, two pulls
    assert card["critic_of"]["also_retry"]["renoise"] is True and card["critic_of"]["also_retry"]["sigma_max"] == 1.0
    assert "critic" not in card["critic_of"]["also_retry"]  # its pull finished without a critic, as the first's
    assert card["training"]["init"] == str(first) and card["training"]["lr"] == "one-cycle to 1e-09"
    assert card["rebuild"][0] == load_prior(first)[1].to_json()["rebuild"][0]  # the critic it started from first
    assert card["rebuild"][1].endswith(f"--first-digit 5 --also-retry --init {first} --lr 1e-09")
    ckpt = tmp_path / "tuned.safetensors.ckpt"
    with np.load(ckpt / "endpoints_5_7.npz") as a, np.load(ckpt / "retry" / "endpoints_5_7.npz") as b, \
            np.load(tmp_path / "first.safetensors.ckpt" / "endpoints_0_2.npz") as c:
        assert a["last"].shape == b["last"].shape == (18, 28, 28)
        assert not np.array_equal(a["last"], b["last"])  # the retry's pull ends elsewhere
        assert not np.array_equal(a["last"], c["last"])  # other starts
    # At a learning rate of 1e-9 the fine-tune stays where it started; a fresh critic would not be near it.
    start, end = load_file(str(first)), load_file(str(tuned))
    assert all(torch.allclose(start[k], end[k], atol=1e-5) for k in start)
    assert not all(torch.equal(start[k], end[k]) for k in start)
    with pytest.raises(SystemExit, match="has no retry"):
        train_critic.main([*base, "--recipe", "realistic-stochastic", "--also-retry", "--out", str(tmp_path / "x.safetensors")])
    with pytest.raises(SystemExit, match="--init nowhere"):
        train_critic.main([*base, "--init", "nowhere", "--out", str(tmp_path / "x.safetensors")])
    with pytest.raises(SystemExit, match="where the reals start"):
        train_critic.main([*base[:3], "30", *base[4:], "--first-digit", "19990", "--out", str(tmp_path / "x.safetensors")])
