"""``trav-gui datasets`` (list), ``trav-gui datasets add PATH --name NAME`` and ``trav-gui datasets remove NAME``.

The engine is imported inside each command, as in :mod:`trav_gui.cli`: building the parser loads no torch.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_dataset_commands"]


def _cmd_list(args: argparse.Namespace) -> int:
    from trav_gui.engine.data.datasets import DATASETS, SHIPPED_COUNTS, user_dataset_problems, user_datasets
    from trav_gui.paths import user_datasets_dir

    rows = [(ds, SHIPPED_COUNTS, "shipped") for ds in DATASETS.values()]
    rows += [(ds, ds.counts, ds.source) for ds in user_datasets().values()]
    print(f"{'name':<16} {'title':<16} {'shape':<9} {'classes':<32} {'train/test':<14} source")
    for ds, (train, test), source in rows:
        names = ", ".join(ds.class_names)
        classes = f"{ds.num_classes}: {names if len(names) <= 28 else names[:25] + '...'}"
        print(f"{ds.name:<16} {ds.title:<16} {'x'.join(map(str, ds.shape)):<9} {classes:<32} "
              f"{f'{train}/{test}':<14} {source}")
    if len(rows) == len(DATASETS):
        print(f"\nno user data sets yet ({user_datasets_dir()}): trav-gui datasets add PATH --name NAME")
    for name, why in user_dataset_problems().items():
        print(f"warning: {name}: {why}", file=sys.stderr)
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trav_gui.engine.data.folders import DatasetFolderError, import_folder

    bar = tqdm(desc=f"importing {args.name}", unit="image", disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        ds = import_folder(args.path, args.name, args.title, progress=progress)
    except DatasetFolderError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    train, test = ds.counts
    print(f"{ds.name}: {ds.num_classes} classes ({', '.join(ds.class_names)}), {'x'.join(map(str, ds.shape))} "
          f"images, {train} for training and {test} for testing; kept in {ds.home}")
    print(f"use it: python -m training.train --dataset {ds.name} --kind robust --out {ds.name}-robust.safetensors, "
          f"then trav-gui models add {ds.name}-robust.safetensors")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    from trav_gui.engine.data.folders import DatasetFolderError, remove_user_dataset
    from trav_gui.engine.models.user_models import list_user_models

    users = [e.name for e in list_user_models() if e.dataset == args.name]
    if users:
        print(f"error: the user models {', '.join(users)} were trained on {args.name}; remove them first: "
              f"trav-gui models remove {users[0]}", file=sys.stderr)
        return 2
    try:
        folder = remove_user_dataset(args.name)
    except DatasetFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"removed {args.name} ({folder}); the folder it was imported from is untouched")
    return 0


def add_dataset_commands(sub: argparse._SubParsersAction) -> None:
    """The ``datasets`` command: it lists the data sets; ``add`` and ``remove`` manage the user's."""
    datasets = sub.add_parser("datasets", help="list the shipped and user data sets; add an image folder as a data "
                                               "set, or remove one")
    datasets.set_defaults(func=_cmd_list)
    commands = datasets.add_subparsers(dest="datasets_command", metavar="{add,remove}")
    add = commands.add_parser(
        "add", help="import an image folder (torchvision's ImageFolder layout) as a user data set",
        description="Import PATH/train/<class>/* and PATH/test/<class>/* (the same class folders in both; "
                    "images all one size, square, 28x28 to 64x64, grey or colour) as the data set NAME, kept "
                    "in the user data sets folder ($TRAV_GUI_USER_DATASETS to move it). Then --dataset NAME "
                    "works in training.train, training.build_realism_reference, trav-gui traverse and gallery.")
    add.add_argument("path", help="the folder holding train/ and test/")
    add.add_argument("--name", required=True, help="what to call it: lower-case letters, digits, '-' or '_'")
    add.add_argument("--title", default=None, help="for people (default: the name)")
    add.set_defaults(func=_cmd_add)
    remove = commands.add_parser("remove", help="forget a user data set (shipped ones stay; the folder it was "
                                                "imported from is untouched)")
    remove.add_argument("name")
    remove.set_defaults(func=_cmd_remove)
