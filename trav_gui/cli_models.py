"""``trav-gui models add FILE [--name NAME]`` and ``trav-gui models remove NAME``: the user models folder.

The engine is imported inside each command, as in :mod:`trav_gui.cli`: building the parser loads no torch.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_model_commands"]


def _cmd_add(args: argparse.Namespace) -> int:
    from trav_gui.engine.models.errors import ModelLoadError, UserModelError
    from trav_gui.engine.models.user_models import accuracy_warning, add_user_model, detected_summary

    try:
        entry, _ = add_user_model(args.file, name=args.name)
    except (ModelLoadError, UserModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ev = entry.card.evaluation
    detected = detected_summary(entry.card)
    if detected:
        print(f"{entry.name}: {detected}")
    print(f"{entry.name}: clean accuracy {100 * ev.clean_accuracy:.2f} % on the {ev.clean_samples} "
          f"{entry.dataset} test images; kept as {entry.path}")
    warning = accuracy_warning(entry.card)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"use it: trav-gui traverse --model {entry.name} ..., or tick it in the app (trav-gui gui)")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    from trav_gui.engine.models.errors import UserModelError
    from trav_gui.engine.models.user_models import remove_user_model

    try:
        removed = remove_user_model(args.name)
    except UserModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"removed {args.name} ({', '.join(p.name for p in removed)})")
    return 0


def add_model_commands(models: argparse.ArgumentParser) -> None:
    """Give the ``models`` command its ``add`` and ``remove`` subcommands (without one it lists)."""
    sub = models.add_subparsers(dest="models_command", metavar="{add,remove}")
    add = sub.add_parser(
        "add", help="check a .safetensors, .onnx or .recipe file, measure its clean accuracy and keep it as a user "
             "model",
        description="Check a model file as the app loads it (a .safetensors with a JSON card beside it naming its "
                    "architecture and input conventions, or an .onnx graph, compared with onnxruntime; without "
                    "a card its data set, input scaling and output kind are detected by measuring test "
                    "accuracy, and the card is written), measure its clean accuracy on the shipped test set of its data set, and keep "
                    "a copy with its card in the user models folder ($TRAV_GUI_USER_MODELS to move it). The "
                    "app lists it on every start; trav-gui traverse --model NAME uses it.")
    add.add_argument("file", help="a .safetensors, .onnx or .recipe file (its card: the same name with .json)")
    add.add_argument("--name", default=None, help="what to call it (default: the file's name without suffix)")
    add.set_defaults(func=_cmd_add)
    remove = sub.add_parser("remove", help="delete a user model (shipped models stay)")
    remove.add_argument("name")
    remove.set_defaults(func=_cmd_remove)
