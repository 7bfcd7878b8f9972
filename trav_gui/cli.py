"""The ``trav-gui`` command line: the engine without a window.

Each command imports the engine inside its function: ``trav-gui --help`` and argument errors
load no torch, and only ``trav-gui gui`` loads Qt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trav_gui import __version__
from trav_gui.cli_datasets import add_dataset_commands
from trav_gui.cli_models import add_model_commands


def _cmd_gui(args: argparse.Namespace) -> int:
    # imported here: the other commands never load Qt
    from trav_gui.qt.app import main as app_main

    return app_main([])


def _cmd_models(args: argparse.Namespace) -> int:
    from trav_gui.engine.models.loading import list_models
    from trav_gui.engine.models.user_models import list_user_models
    from trav_gui.paths import user_models_dir

    groups = [("shipped" if args.folder is None else "folder", list_models(args.folder))]
    if args.folder is None:  # the models added with trav-gui models add, listed apart
        groups.append(("user", list_user_models()))
    if args.json:
        print(json.dumps([e.to_json() for _, entries in groups for e in entries], indent=2))
        return 0
    if not any(entries for _, entries in groups):
        print("no models with cards found", file=sys.stderr)
        return 1
    for source, entries in groups:
        if args.dataset:
            entries = [e for e in entries if e.dataset == args.dataset]
        if source == "user":
            print(f"\nuser models ({user_models_dir()}):" if entries else
                  "\nno user models yet: trav-gui models add FILE (.safetensors with a card, or .onnx)")
            if not entries:
                continue
        print(f"{'name':<18} {'data set':<14} {'kind':<9} {'clean':>7} {'robust (eps, attack)':<40}")
        for e in entries:
            clean = e.card.evaluation.clean_accuracy
            r = e.card.robust_headline()
            rob = f"{100 * r.accuracy:.2f}% (eps {r.eps}, {r.attack})" if r else "-"
            kind = "judge" if e.card.is_judge else e.card.kind or "?"
            print(f"{e.name:<18} {e.dataset:<14} {kind:<9} {'-' if clean is None else f'{100 * clean:.2f}%':>7} {rob}")
    return 0


# 4096 x 4096: a photographed digit fits; a decompression bomb is refused before decoding.
MAX_IMAGE_PIXELS = 4096 * 4096


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _load_models(names: list[str], dataset: str | None = None):
    """The models, their run-record references and their one data set (``dataset`` if given)."""
    from trav_gui.engine.data.datasets import all_datasets
    from trav_gui.engine.models.card import check_one_dataset, refuse_judges
    from trav_gui.engine.models.errors import ModelLoadError
    from trav_gui.engine.models.loading import (
        entry_of,
        load_model,
        model_sha256,
        resolve_model_path,
    )
    from trav_gui.engine.runs.record import ModelRef

    if dataset is not None and dataset not in all_datasets():
        raise CliError(f"--dataset: no data set {dataset!r}; known: {', '.join(all_datasets())}")
    models, refs, entries = [], [], []
    for name in names:
        try:
            models.append(load_model(name))
            path = resolve_model_path(name)
        except ModelLoadError as exc:
            raise CliError(str(exc)) from None
        entries.append(entry_of(path))
        label, k = path.stem, 2
        while label in {r.name for r in refs}:  # the same model twice, or two files of one name
            label, k = f"{path.stem}-{k}", k + 1
        refs.append(ModelRef(label, model_sha256(path), str(path)))
    try:
        refuse_judges(entries)
        found = check_one_dataset(entries)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if dataset is not None and found != dataset:
        which = ", ".join(f"{e.name} ({e.dataset})" for e in entries)
        raise CliError(f"--dataset {dataset}, but the models were trained on another data set: {which}")
    return models, refs, found


def _note_retries(models, refs, steps: int) -> None:
    """Print a note for each recipe whose retry ``steps`` steps leave too little room."""
    from trav_gui.engine.models.loading import entry_of, retry_notes

    for note in retry_notes([entry_of(r.path) for r in refs], models, steps):
        print(f"note: {note}", file=sys.stderr)


def _read_image(path: str, ds):
    """A PNG as an input of data set ``ds``. Grey worlds: an image of the data set's size is
    used as it is, anything else is preprocessed like a drawing, and dark ink on a light
    background is inverted (MNIST is light on dark). Colour worlds: an RGB image of the data
    set's size, used as it is, as (3, H, W)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from trav_gui.engine.data.preprocess import INK_THRESHOLD, drawing_to_mnist

    try:
        # Image.open reads the header only: the size is known before any pixel is decoded.
        with Image.open(path) as im:
            if ds.is_colour and (im.height, im.width) != ds.size:
                raise CliError(f"{path}: {ds.title} images are {ds.size[1]}x{ds.size[0]}, this one is "
                               f"{im.width}x{im.height}; resize it first (or use --index)")
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise CliError(f"{path}: image too large ({im.width}x{im.height} pixels; "
                               f"at most {MAX_IMAGE_PIXELS} pixels)")
            a = np.asarray(im.convert("RGB" if ds.is_colour else "L"), np.float32) / 255.0
    except Image.DecompressionBombError as exc:  # far past Pillow's own limit
        raise CliError(f"{path}: image too large ({exc})") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise CliError(f"{path}: cannot read image ({exc})") from None
    if ds.is_colour:
        return np.ascontiguousarray(a.transpose(2, 0, 1))
    if np.median(a) > 0.5:
        a = 1.0 - a
    if a.max() <= INK_THRESHOLD:
        raise CliError(f"{path}: the image is empty (no ink above {INK_THRESHOLD:.0%}); "
                       "draw a digit or use --index")
    if a.shape == ds.size:
        return a
    try:
        return drawing_to_mnist(a, ds.size[0])
    except ValueError as exc:
        raise CliError(f"{path}: {exc}") from None


def _config_from(args):
    from trav_gui.engine.core.traversal import TraversalConfig
    from trav_gui.engine.realism import CONFIDENT_PROB

    try:
        return TraversalConfig(steps=args.steps, step_size=args.step_size, norm=args.norm, eps=args.eps,
                               objective=args.objective, seed=args.seed,
                               stop_at_prob=(CONFIDENT_PROB if getattr(args, "stop_at", None) == "confident"
                                             else getattr(args, "stop_at_prob", None)))
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _scorer(dataset: str):
    """The data set's realism scorer (shipped judge and reference images), or None with a note."""
    from trav_gui.engine.realism import Scorers

    scorers = Scorers()
    scorer = scorers.get(dataset)
    if scorer is None:
        print(f"note: no realism fields ({scorers.errors.get(dataset)})", file=sys.stderr)
    return scorer


def _cmd_traverse(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from trav_gui.engine.core.traversal import (
        NonFiniteOutputError,
        stack_frames,
        traverse,
    )
    from trav_gui.engine.data.datasets import get_dataset, test_set
    from trav_gui.engine.output.export import export_run
    from trav_gui.engine.runs.record import record_run

    config = _config_from(args)
    if args.target < 0:
        raise CliError(f"--target must be a class number from 0, got {args.target}")
    models, refs, dataset = _load_models(args.model, args.dataset)
    _note_retries(models, refs, config.steps)
    ds = get_dataset(dataset)
    if args.target >= ds.num_classes:
        raise CliError(f"--target must be 0..{ds.num_classes - 1} for {ds.title}, got {args.target}")
    if args.index is not None:
        images, labels = test_set(dataset)
        if not 0 <= args.index < len(images):
            raise CliError(f"--index must be 0..{len(images) - 1}, got {args.index}")
        x0 = images[args.index].astype(np.float32) / 255.0
    else:
        x0 = _read_image(args.image, ds)
    names = [r.name for r in refs]
    frames = []
    bar = tqdm(total=config.steps, desc="traversal", unit="step", disable=None, file=sys.stderr)
    status = 0
    try:
        for frame in traverse(models, x0, args.target, config, shape=ds.shape):
            frames.append(frame)
            if frame.step:
                bar.update(1)
    except NonFiniteOutputError as exc:
        print(f"error: {names[exc.model_index]}: {exc}; writing the {len(frames)} frames before it",
              file=sys.stderr)
        status = 1
    bar.close()
    if not frames:
        return status or 1
    arrays = stack_frames(frames)
    scorer = _scorer(dataset)
    if scorer is not None:  # every frame judged in one batch, as the app does in its worker
        realism = scorer.score(arrays["images"][:, :, 0], args.target, start=x0)
        arrays["judge_probs"], arrays["nn_ratio"] = realism.judge_probs[:, :, None], realism.nn_ratio[:, :, None]
        if realism.colour_kept is not None:
            arrays["colour_kept"] = realism.colour_kept[:, :, None]
            arrays["grey_share"] = realism.grey_share[:, :, None]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = record_run(refs, x0, args.target, config, arrays["step"], arrays["probs"][:, :, 0],
                        arrays["nn_ratio"][:, :, 0] if scorer else None, args.index, {"dataset": dataset},
                        arrays["l2"][:, :, 0])
    summaries = record["extra"]["realism"]
    export_run(out, record, arrays, names)
    last = frames[-1]
    goal = ds.label(args.target)
    for i, name in enumerate(names):
        p = last.probs[i, 0]
        flips = np.flatnonzero(arrays["probs"][:, i, 0].argmax(-1) == args.target)
        flip = f"first predicted {goal} at step {arrays['step'][flips[0]]}" if flips.size else \
            f"never predicted {goal}"
        print(f"{name:>10}: step {last.step}: predicts {ds.label(int(p.argmax()))} (p={p.max():.3f}), "
              f"P({goal})={p[args.target]:.3f}, |d|2={last.l2[i, 0]:.2f}; {flip}")
        sm = summaries[name]
        if sm["confident_step"] is not None:
            k = int(np.flatnonzero(arrays["step"] == sm["confident_step"])[0])
            judged = (f"; judge says {ds.label(int(arrays['judge_probs'][k, i, 0].argmax()))}, nearest real "
                      f"{arrays['nn_ratio'][k, i, 0]:.2f}x typical, most realistic at step "
                      f"{sm['most_realistic_step']}" if scorer is not None else "")
            if "colour_kept" in arrays and np.isfinite(arrays["colour_kept"][k, i, 0]):
                judged += (f"; the ink it added {'keeps' if arrays['colour_kept'][k, i, 0] > 0.5 else 'does not keep'}"
                           f" the start's colour ({100 * np.nan_to_num(arrays['grey_share'][k, i, 0]):.0f} % grey)")
            print(f"{'':>10}  confident (p >= 0.9) at step {sm['confident_step']}{judged}")
    print(f"wrote {out}/")
    return status


def _cmd_gallery(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trav_gui.engine.files import save_png
    from trav_gui.engine.output.gallery import (
        gallery_classes,
        render_galleries_side_by_side,
        render_gallery,
        run_gallery,
    )
    from trav_gui.engine.realism import Scorers

    config = _config_from(args)
    models, refs, dataset = _load_models(args.model, args.dataset)
    _note_retries(models, refs, config.steps)
    names = [r.name for r in refs]
    try:
        classes = gallery_classes(dataset, args.classes)
    except ValueError as exc:
        raise CliError(f"--classes: {exc}") from None
    pairs = len(classes) * (len(classes) - 1)
    scorers = Scorers()
    scorer = scorers.get(dataset)
    if scorer is None:
        print(f"note: cells are not judged: {scorers.errors[dataset]}", file=sys.stderr)
    bar = tqdm(total=config.steps, desc=f"gallery, {pairs} traversals x {len(names)} models", unit="step",
               disable=None, file=sys.stderr)
    gallery = run_gallery(models, names, config, progress=lambda t, total: bar.update(1) if t else None,
                          dataset=dataset, classes=classes, scorer=scorer)
    bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        save_png(out / f"gallery_{name}.png", render_gallery(gallery, i))
        hits = (gallery.first_flip[i] > 0).sum()
        judged = ""
        if gallery.success is not None:
            real = int(gallery.success[i].sum())  # the diagonal (the starts) is never a success: not a target
            judged = f"; {real}/{pairs} end as a real-looking target (the judge and the nearest real image)"
        print(f"{name:>10}: {hits}/{pairs} traversals reached their target{judged}")
    save_png(out / "gallery_side_by_side.png", render_galleries_side_by_side(gallery))
    print(f"wrote {out}/")
    return 0


def _cmd_successmap(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trav_gui.engine.data.datasets import get_dataset
    from trav_gui.engine.output.successmap import run_successmap, weakest_pairs

    config = _config_from(args)
    if args.starts < 1:
        raise CliError(f"--starts must be 1 or more, got {args.starts}")
    models, refs, dataset = _load_models(args.model, args.dataset)
    _note_retries(models, refs, config.steps)
    for model, ref in zip(models, refs):
        bar = tqdm(total=1, desc=f"success map of {ref.name}", unit="step", disable=None, file=sys.stderr)

        def progress(done: int, total: int, what: str, bar=bar) -> None:
            bar.total = total
            bar.set_postfix_str(what, refresh=False)
            bar.update(done - bar.n)

        try:
            result = run_successmap(model, ref.name, dataset, args.starts, config, args.out, progress=progress)
        except KeyboardInterrupt:
            bar.close()
            print(f"stopped; the finished start classes are kept in {args.out}/: run the same command again to "
                  "continue", file=sys.stderr)
            return 130
        bar.close()
        names = [get_dataset(dataset).short(c) for c in range(len(result.by_source()))]
        for last in (False, True):
            by_source = ", ".join(f"{n} {100 * v:.0f}" for n, v in zip(names, result.by_source(last)))
            print(f"{ref.name if not last else '':>10}: success {100 * result.overall(last):.1f} % of "
                  f"{int(result.traversals.sum())} traversals {'at the last frame' if last else 'at the confident point'}"
                  f"; by start class (%): {by_source}")
        print(f"{'':>10}  weakest pairs: " + ", ".join(f"{names[s]}→{names[t]} {100 * v:.0f} %"
                                                      for s, t, v in weakest_pairs(result)))
    print(f"wrote {args.out}/")
    return 0


def _add_traversal_options(p: argparse.ArgumentParser) -> None:
    # Defaults and choices are the engine's own (TraversalConfig's, from its torch-free defaults
    # module), as in the app; the data set is checked once a command runs (user sets are many).
    from trav_gui.engine.core import defaults

    p.add_argument("--model", action="append", required=True,
                   help='"robust", "standard", "realistic" (a recipe: robust models, a prior and a stop rule), '
                        'a user model\'s name (trav-gui models) or a .safetensors, .onnx or .recipe path; repeat '
                        'for side by side')
    p.add_argument("--steps", type=int, default=defaults.STEPS, help="default: %(default)s")
    p.add_argument("--step-size", type=float, default=defaults.STEP_SIZE, help="default: %(default)s")
    p.add_argument("--norm", choices=list(defaults.NORM_NAMES), default=defaults.NORM,
                   help="the norm of a step (default: %(default)s)")
    p.add_argument("--eps", type=float, default=None,
                   help="project onto this ball around the start (PGD mode); default: no ball")
    p.add_argument("--objective", choices=list(defaults.OBJECTIVE_NAMES), default=defaults.OBJECTIVE,
                   help="what the steps climb for the target (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.SEED, help="default: %(default)s")
    p.add_argument("--dataset", default=None,
                   help="the models' data set (trav-gui datasets lists them; default: the one their cards "
                        "name); a run never mixes two")
    p.add_argument("--out", required=True, help="output folder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trav-gui",
        description="Watch adversarially robust and standard networks (MNIST, Fashion-MNIST, Colored-MNIST, "
                    "your own image folders) traverse an image from one class to another.",
    )
    parser.add_argument("--version", action="version", version=f"trav-gui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gui = sub.add_parser("gui", help="open the desktop app (same as python main.py)")
    gui.set_defaults(func=_cmd_gui)
    models = sub.add_parser("models", help="list the shipped and user models and their measured accuracy; "
                                           "add or remove user models")
    models.add_argument("--folder", default=None, help="a folder of .safetensors + .json cards")
    models.add_argument("--json", action="store_true", help="print the cards as JSON")
    models.add_argument("--dataset", default=None,
                        help="only the models of this data set (trav-gui datasets lists them)")
    models.set_defaults(func=_cmd_models)
    add_model_commands(models)
    add_dataset_commands(sub)

    trav = sub.add_parser("traverse", help="run one traversal and write frames, npz, CSV, GIF and run record",
                          description="Traverse one image toward a target with each model, in lock-step. "
                                      "Writes DIR/<model>.npz (frames, probs, l2, linf, objective), PNG "
                                      "frames, a side-by-side GIF, steps.csv and run.json (the app's format).")
    src = trav.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", type=int, help="a test image of the data set (0..9999)")
    src.add_argument("--image", help="a PNG: grey worlds take the data set's size as is and anything else "
                                     "preprocessed like a drawing; colour worlds an RGB image of their size")
    trav.add_argument("--target", type=int, required=True, help="the target class, 0..K-1")
    stop = trav.add_mutually_exclusive_group()
    stop.add_argument("--stop-at-prob", type=float, default=None,
                      help="stop a model once P(target) reaches this; default: never")
    stop.add_argument("--stop-at", choices=["confident"], default=None,
                      help="confident: stop each model at its confident point (its own P(target) >= 0.9)")
    _add_traversal_options(trav)
    trav.set_defaults(func=_cmd_traverse)

    gal = sub.add_parser("gallery", help="KxK source->target grids, one PNG per model and one side by side")
    gal.add_argument("--classes", type=int, nargs="+", default=None,
                     help="the classes to show (2 to 12; default: all, or the first 12 of a larger data set)")
    _add_traversal_options(gal)
    gal.set_defaults(func=_cmd_gallery)

    smap = sub.add_parser("successmap", help="KxK success map: which source->target pairs end as a real-looking "
                                             "target (PNG heat maps + CSV; continues an interrupted map)",
                          description="Traverse the first --starts test images of every class to every other "
                                      "class, one model at a time, and measure each traversal at its confident "
                                      "point and at its last frame with the data set's independent judge and real "
                                      "images. Writes "
                                      "DIR/successmap_<model>.png, .csv (cells) and _traversals.csv (one row "
                                      "per traversal); run the same command again to continue a stopped map.")
    smap.add_argument("--starts", type=int, default=20, help="start images per class (default: %(default)s)")
    _add_traversal_options(smap)
    smap.set_defaults(func=_cmd_successmap)
    return parser


# What a shell reports for a command killed by SIGPIPE (128 + 13), as for Unix tools.
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader that has gone (| head) is found here, not at exit
        return code
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped (trav-gui models --json | head -1): stop quietly, as Unix tools do.
        # stdout goes to /dev/null so that Python's flush at exit does not complain again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
