"""The ``trav-gui`` command line: the engine without a window."""

from __future__ import annotations

import argparse
import json
import sys

from trav_gui import __version__


def _cmd_gui(args: argparse.Namespace) -> int:
    from trav_gui.app import main as app_main

    return app_main([])


def _cmd_models(args: argparse.Namespace) -> int:
    from trav_gui.engine.models import list_models

    cards = list_models(args.folder)
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print("no models with cards found", file=sys.stderr)
        return 1
    print(f"{'name':<12} {'kind':<9} {'clean':>7} {'robust (eps, attack)':<40}")
    for card in cards:
        ev = card.get("evaluation") or {}
        clean = f"{100 * ev['clean_accuracy']:.2f}%" if "clean_accuracy" in ev else "-"
        robust = ev.get("robust") or []
        rob = f"{100 * robust[0]['accuracy']:.2f}% (eps {robust[0]['eps']}, {robust[0]['attack']})" if robust else "-"
        print(f"{card['name']:<12} {card.get('kind', '?'):<9} {clean:>7} {rob}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trav-gui",
        description="Watch adversarially robust and standard MNIST networks traverse an image "
                    "from one class to another.",
    )
    parser.add_argument("--version", action="version", version=f"trav-gui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gui = sub.add_parser("gui", help="open the desktop app (same as python main.py)")
    gui.set_defaults(func=_cmd_gui)
    models = sub.add_parser("models", help="list the available models and their measured accuracy")
    models.add_argument("--folder", default=None, help="a folder of .safetensors + .json cards")
    models.add_argument("--json", action="store_true", help="print the cards as JSON")
    models.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)
