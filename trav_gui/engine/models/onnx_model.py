"""ONNX graphs as torch modules that gradients flow through, loaded without trusting the file.

Traversal differentiates the model with respect to its input, so an ``.onnx`` file is not run
by onnxruntime but converted to torch operations by onnx2torch (with the converters of
:mod:`trav_gui.engine.models.onnx_ops` for the operator versions it lacks). Needs the ``onnx`` extra:
``pip install -e ".[onnx]"``.

What is done with the file, in order (each refusal is a :class:`ModelLoadError` with the reason):

1. at most :data:`MAX_ONNX_BYTES`, parsed with ``onnx.load(..., load_external_data=False)``;
2. every tensor stored outside the file (initializers, constants, sparse tensors, subgraphs)
   is checked **before** onnx reads any of it: its location must be a plain file name in the
   model's own folder (no path separator, no ``..``, no drive, no symlink leading out of the
   folder), a regular file, its offset and length inside the file, all such files together at
   most :data:`MAX_EXTERNAL_BYTES`, and only the keys ``location``, ``offset``, ``length``,
   ``checksum``; only then does onnx load them;
3. one float32 input of the card's data set's shape, ``(N, C, H, W)`` or flat ``(N, C·H·W)``
   (MNIST: ``(N, 1, 28, 28)`` or ``(N, 784)``), and one output; N may be free or fixed (a
   graph exported for a batch of B is run in chunks of B: :class:`FixedBatch`);
4. node names are replaced by ``n0``, ``n1``...: onnx2torch turns them into module names
   that torch.fx writes into generated Python source, where a name with a quote would run
   as code (a crafted name did, in a test);
5. every operator must have a converter, else the unsupported ones are listed;
6. the converted model's outputs are compared with onnxruntime's on :data:`PARITY_IMAGES` test
   images of the card's data set (max |Δ| ≤ :data:`PARITY_TOLERANCE`), and gradients must
   reach the input.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from trav_gui.engine.data.datasets import Dataset, get_dataset, test_images
from trav_gui.engine.files import sha256_of
from trav_gui.engine.models.conventions import Conventions
from trav_gui.engine.models.errors import ModelLoadError

__all__ = ["MAX_EXTERNAL_BYTES", "MAX_FIXED_BATCH", "MAX_ONNX_BYTES", "PARITY_IMAGES", "PARITY_TOLERANCE",
           "FixedBatch", "external_data_files", "graph_input", "load_onnx", "onnx_sha256", "ort_session",
           "read_complete", "run_in_chunks", "self_contained_bytes"]

MAX_ONNX_BYTES = 512 << 20      # the graph file itself (protobuf's own limit is 2 GiB)
MAX_EXTERNAL_BYTES = 1 << 30    # all external data files of one model together
PARITY_IMAGES = 100
PARITY_TOLERANCE = 1e-4
# A graph exported for a fixed batch is run in chunks of that size; beyond this it is surely a mistake.
MAX_FIXED_BATCH = 4096
EXTERNAL_KEYS = {"location", "offset", "length", "checksum"}
_FLOAT = 1  # onnx.TensorProto.FLOAT
_EXTERNAL = 1  # onnx.TensorProto.EXTERNAL


def _import_onnx():
    try:  # lazy: the onnx extra is optional; without it only .onnx files are refused
        import onnx
        import onnx2torch  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(f"reading .onnx files needs the onnx extra ({exc.name} is not installed): "
                             "pip install -e \".[onnx]\" in the project, or pip install \"trav_gui[onnx]\"") from None
    return onnx


def _read_graph(path: Path):
    onnx = _import_onnx()
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    size = path.stat().st_size
    if size > MAX_ONNX_BYTES:
        raise ModelLoadError(f"{path.name}: {size} bytes, more than the {MAX_ONNX_BYTES} an ONNX graph may have "
                             "here (store large weights as external data beside it)")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and whatever else a damaged file raises
        raise ModelLoadError(f"{path.name}: not a valid ONNX file ({type(exc).__name__}: {exc})") from None


def _graph_tensors(graph) -> Iterator:
    """Every TensorProto of a graph: initializers, constants in attributes, sparse tensors, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors):
                yield from (sparse.values, sparse.indices)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graph_tensors(sub)


def _check_location(location: str, folder: Path, name: str) -> Path:
    """The external data file ``location`` names, if it is a plain regular file in ``folder``."""
    plain = (location and location not in (".", "..") and "/" not in location and "\\" not in location
             and ":" not in location and "\0" not in location and len(location) <= 255
             and os.path.basename(location) == location)
    if not plain:
        raise ModelLoadError(f"{name}: refused: external data location {location!r} is not a plain file name "
                             "in the model's folder (no folders, no '..', no drive)")
    file = folder / location
    try:
        real = Path(os.path.realpath(file))
        inside = real.parent == Path(os.path.realpath(folder))
        regular = file.is_file()
    except OSError as exc:
        raise ModelLoadError(f"{name}: external data file {location!r} cannot be read ({exc})") from None
    if not file.exists() and not file.is_symlink():
        raise ModelLoadError(f"{name}: its external data file {location!r} is missing; keep it beside the model")
    if not inside:
        raise ModelLoadError(f"{name}: refused: external data {location!r} is a link out of the model's folder")
    if not regular:
        raise ModelLoadError(f"{name}: refused: external data {location!r} is not a regular file")
    return file


def external_data_files(model, folder: Path, name: str) -> list[Path]:
    """The external data files ``model`` refers to, each checked (see the module's step 2).

    Raises :class:`ModelLoadError` naming the first location, key, offset or size refused.
    """
    files: dict[Path, int] = {}
    for tensor in _graph_tensors(model.graph):
        if tensor.data_location != _EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        unknown = sorted(set(entries) - EXTERNAL_KEYS)
        if unknown or len(entries) != len(tensor.external_data):
            raise ModelLoadError(f"{name}: refused: tensor {tensor.name[:80]!r} has external data entries "
                                 f"{unknown or 'repeated'}; only {sorted(EXTERNAL_KEYS)} are read")
        file = _check_location(entries.get("location", ""), folder, name)
        size = files.setdefault(file, file.stat().st_size)
        try:
            offset, length = int(entries.get("offset", 0)), int(entries.get("length", size))
        except ValueError:
            raise ModelLoadError(f"{name}: refused: tensor {tensor.name[:80]!r} has a non-integer offset "
                                 "or length") from None
        if offset < 0 or length < 0 or offset + length > size:
            raise ModelLoadError(f"{name}: refused: tensor {tensor.name[:80]!r} lies outside {file.name} "
                                 f"(offset {offset}, length {length}, file {size} bytes)")
    total = sum(files.values())
    if total > MAX_EXTERNAL_BYTES:
        raise ModelLoadError(f"{name}: refused: its external data files hold {total} bytes, more than the "
                             f"{MAX_EXTERNAL_BYTES} a model may have here")
    return list(files)


def onnx_sha256(path: Path) -> str:
    """The sha256 of the graph file, and of its external data files (in the order used) after it."""
    try:
        model = _read_graph(path)
    except ModelLoadError:
        return sha256_of(path)
    files = external_data_files(model, path.parent, path.name)
    if not files:
        return sha256_of(path)
    digest = hashlib.sha256(bytes.fromhex(sha256_of(path)))
    for file in files:
        digest.update(file.name.encode() + b"\0" + bytes.fromhex(sha256_of(file)))
    return digest.hexdigest()


def read_complete(path: Path):
    """The graph with its external data (checked first) loaded into it, and whether it had any."""
    onnx = _import_onnx()
    model = _read_graph(path)
    external = bool(external_data_files(model, path.parent, path.name))
    if external:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{path.name}: its external data cannot be read ({exc})") from None
    return model, external


def self_contained_bytes(path: Path) -> bytes:
    """The graph file with its external data (checked as above) put inside it: a copy that
    stands alone (at most ``MAX_ONNX_BYTES + MAX_EXTERNAL_BYTES``, under protobuf's 2 GiB)."""
    model, external = read_complete(path)
    return model.SerializeToString() if external else path.read_bytes()


def graph_input(model, name: str, ds: Dataset) -> tuple[str, str, int | None]:
    """The one input's name, layout (``"image"`` or ``"flat"``), and its fixed batch size (None when
    the batch axis is dynamic); the input's shape must be data set ``ds``'s."""
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ModelLoadError(f"{name}: the graph has {len(inputs)} inputs; the app feeds it one batch of images")
    value = inputs[0]
    kind = value.type.WhichOneof("value")
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    shape = "(" + ", ".join(str(d) if d is not None else "N" for d in dims) + ")"
    if kind != "tensor_type" or not tensor.HasField("shape"):
        raise ModelLoadError(f"{name}: the graph's input {value.name!r} has no tensor shape; export it with "
                             f"an input of shape {_image_shape(ds)}")
    c, h, w = ds.shape
    layout = {tuple(ds.shape): "image", (c * h * w,): "flat"}.get(tuple(dims[1:]))
    if layout is None:
        raise ModelLoadError(f"{name}: refused: its input {value.name!r} has shape {shape}; {ds.title} "
                             f"images are {_image_shape(ds)} or flat (N, {c * h * w})")
    if dims[0] is not None and not 1 <= dims[0] <= MAX_FIXED_BATCH:
        raise ModelLoadError(f"{name}: refused: its input {value.name!r} has a fixed batch of {dims[0]}; export "
                             f"it with one image, torch.rand(1, {c}, {h}, {w}), or with a dynamic batch axis")
    if tensor.elem_type != _FLOAT:
        raise ModelLoadError(f"{name}: refused: its input {value.name!r} is not float32 "
                             f"(ONNX element type {tensor.elem_type})")
    if len(graph.output) != 1:
        raise ModelLoadError(f"{name}: the graph has {len(graph.output)} outputs; export the model with its "
                             f"{ds.num_classes} class scores as its only output")
    return value.name, layout, dims[0]


def _image_shape(ds: Dataset) -> str:
    return f"(N, {', '.join(map(str, ds.shape))})"


def _prepare_nodes(model, name: str) -> None:
    """Rename every node ``n<i>`` (see the module's step 4) and refuse operators without a converter."""
    # lazy: the optional onnx extra
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    opsets.setdefault("", opsets.get("ai.onnx", 0))
    unsupported = []
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
        if node.domain == "ai.onnx":
            node.domain = ""
        version = opsets.get(node.domain)
        try:
            if node.domain != "" or version is None:
                raise NotImplementedError
            get_converter(operation_type=node.op_type, version=version)
        except NotImplementedError:
            label = f"{node.domain + '.' if node.domain else ''}{node.op_type[:60]} (opset {version})"
            if label not in unsupported:
                unsupported.append(label)
    if unsupported:
        many = len(unsupported) > 1
        raise ModelLoadError(f"{name}: refused: unsupported operation{'s' if many else ''} {', '.join(unsupported)}: "
                             f"onnx2torch cannot convert {'them' if many else 'it'} to torch, and traversal needs "
                             "the model's gradients")


def chunks(n: int, size: int | None) -> Iterator[tuple[int, int]]:
    """(start, stop) of the consecutive chunks of ``size`` (None: one chunk of all) that cover ``n`` items."""
    step = size or max(n, 1)
    return ((i, min(i + step, n)) for i in range(0, n, step))


def padded(chunk, size: int | None):
    """``chunk`` (a tensor or array of k <= size items) filled up to ``size`` with copies of its last item."""
    missing = 0 if size is None else size - len(chunk)
    if missing <= 0:
        return chunk
    if isinstance(chunk, torch.Tensor):
        return torch.cat([chunk, chunk[-1:].expand(missing, *chunk.shape[1:])])
    return np.concatenate([chunk, np.repeat(chunk[-1:], missing, axis=0)])


class FixedBatch(nn.Module):
    """A graph exported for a fixed batch of ``size`` images, given chunks of that size; the last
    chunk is filled with copies of its last image, whose outputs are dropped (in eval mode the
    images of a batch do not affect each other, so the kept outputs and gradients are exact)."""

    def __init__(self, inner: nn.Module, size: int) -> None:
        super().__init__()
        self.inner = inner
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) == self.size:
            return self.inner(x)
        return torch.cat([self.inner(padded(x[a:b], self.size))[: b - a] for a, b in chunks(len(x), self.size)])


def _reference_outputs(graph_bytes: bytes, input_name: str, x: np.ndarray, batch: int | None) -> np.ndarray:
    """onnxruntime's outputs for ``x``, in chunks of the graph's fixed ``batch`` (None: all at once)."""
    return run_in_chunks(ort_session(graph_bytes), input_name, x, batch)


def run_in_chunks(session, input_name: str, x: np.ndarray, batch: int | None) -> np.ndarray:
    """``session``'s (onnxruntime) first output for ``x``, fed in chunks of the graph's fixed ``batch``
    (None: all at once), the last chunk filled up and its extra outputs dropped."""
    return np.concatenate([session.run(None, {input_name: padded(x[a:b], batch)})[0][: b - a]
                           for a, b in chunks(len(x), batch)])


def ort_session(graph_bytes: bytes):
    """An onnxruntime session on the CPU, quiet."""
    import onnxruntime  # lazy: the optional onnx extra

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(graph_bytes, options, providers=["CPUExecutionProvider"])


def _check_parity_and_gradients(module: nn.Module, graph_bytes: bytes, input_name: str, batch: int | None,
                                conventions: Conventions, dataset: str, name: str) -> None:
    k = get_dataset(dataset).num_classes
    x = conventions.prepare(test_images(dataset, PARITY_IMAGES)[0])
    try:
        expected = _reference_outputs(graph_bytes, input_name, x.numpy(), batch)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common base class
        raise ModelLoadError(f"{name}: onnxruntime cannot run this graph ({type(exc).__name__}: {exc})") from None
    try:
        with torch.no_grad():
            got = module(x).float().numpy()
    except Exception as exc:  # noqa: BLE001 - the converted graph may fail in any torch op
        raise ModelLoadError(f"{name}: the converted model fails on test images "
                             f"({type(exc).__name__}: {exc})") from None
    if got.shape != (len(x), k) or expected.shape != got.shape:
        raise ModelLoadError(f"{name}: refused: its output for {len(x)} images has shape {tuple(expected.shape)}; "
                             f"the app needs {k} class scores per {dataset} image")
    if not (np.isfinite(got).all() and np.isfinite(expected).all()):
        raise ModelLoadError(f"{name}: refused: it returns NaN or inf on the {dataset} test images")
    delta = float(np.abs(got - expected.astype(np.float32)).max())
    if delta > PARITY_TOLERANCE:
        raise ModelLoadError(f"{name}: refused: the converted model differs from onnxruntime by up to {delta:.3g} "
                             f"on {len(x)} test images (at most {PARITY_TOLERANCE} allowed), so it would not "
                             "be the model in the file")
    probe = x[:4].clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            (grad,) = torch.autograd.grad((module(probe) * torch.linspace(1, 2, k)).sum(), probe)
    except RuntimeError as exc:
        raise ModelLoadError(f"{name}: refused: gradients do not flow through this graph to its input "
                             f"({exc})") from None
    if not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
        raise ModelLoadError(f"{name}: refused: its gradient with respect to the input is zero or not finite on "
                             "test images, so a traversal could not move")


def load_onnx(path: Path, conventions: Conventions, dataset: str) -> nn.Module:
    """The graph in ``path`` as a torch module in eval mode, in its own input convention.

    ``conventions`` (from the card) says how test images are prepared for the parity check and
    must agree with the graph's input layout; :func:`~trav_gui.engine.models.conventions.adapt` wraps
    the result into the app's convention. Raises :class:`ModelLoadError` (see the module).
    """
    model, _ = read_complete(path)
    # lazy: the optional onnx extra (onnx_ops imports onnx2torch when it is imported)
    from onnx2torch import convert

    from trav_gui.engine.models.onnx_ops import (
        register_converters,
        relax_reshape_allowzero,
    )

    ds = get_dataset(dataset)
    input_name, layout, batch = graph_input(model, path.name, ds)
    if layout != conventions.layout:
        flat = f"(N, {ds.shape[0] * ds.shape[1] * ds.shape[2]})"
        raise ModelLoadError(f"{path.name}: its card says \"layout\": \"{conventions.layout}\", but the graph's "
                             f"input is {_image_shape(ds) if layout == 'image' else flat}: set "
                             f"\"layout\": \"{layout}\"")
    graph_bytes = model.SerializeToString()  # what onnxruntime runs: the file as it is
    register_converters()
    _prepare_nodes(model, path.name)
    relax_reshape_allowzero(model)
    try:
        module = convert(model)
    except Exception as exc:  # noqa: BLE001 - a converter may raise anything on a graph it does not expect
        raise ModelLoadError(f"{path.name}: refused: cannot convert it to torch "
                             f"({type(exc).__name__}: {exc})") from None
    module = FixedBatch(module, batch) if batch is not None else module
    module.requires_grad_(False)
    module.eval()
    _check_parity_and_gradients(module, graph_bytes, input_name, batch, conventions, dataset, path.name)
    return module
