"""Converters for the ONNX operator versions that today's exporters write and onnx2torch lacks.

torch's exporters write opsets 18 to 20; onnx2torch 1.5.15 converts many operators only up
to the version of opset 13-17 and refuses the rest (measured: ``Constant`` v19, ``Reshape``
v19, and ``Reshape`` with ``allowzero=1``, which torch's default exporter writes). Nothing
is forked or patched here: converters for the missing versions are added through onnx2torch's
own registry (``onnx2torch.node_converters.registry.add_converter``), each either

- the converter of the version before, where the new version only admits more element types
  (float8, int4, bfloat16...; the semantics of float32 models are unchanged), listed in
  :data:`SAME_SEMANTICS`, or
- a converter written for the new version (``Reshape`` with ``allowzero``, ``AveragePool``
  with dilations of 1, ``Reduce*`` with axes as an input, ``Pad`` without axes, ``Gelu``),
  which raises ``NotImplementedError`` with the reason for what it does not cover.

A version that a later onnx2torch converts itself keeps that converter. Every converted model
is still compared with onnxruntime before it is used (:mod:`trav_gui.engine.models.onnx_model`), so a
converter that were wrong would refuse the model, not change what the app shows.
"""

from __future__ import annotations

import torch
from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
from onnx2torch.node_converters.registry import add_converter, get_converter
from onnx2torch.node_converters.reshape import OnnxReshape
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value, onnx_mapping_from_node
from torch import nn

__all__ = ["SAME_SEMANTICS", "register_converters", "relax_reshape_allowzero"]

# op: (the version onnx2torch converts, the later versions that only add element types)
SAME_SEMANTICS: dict[str, tuple[int, tuple[int, ...]]] = {
    "Constant": (13, (19, 21, 23, 24, 25)),
    "Cast": (13, (19, 21, 23, 24, 25)),  # v19's "saturate" concerns float8 targets only
    "Identity": (16, (19, 21, 23, 24, 25)),
    "Shape": (15, (19, 21, 23, 24, 25)),
    "Flatten": (13, (21, 23, 24, 25)),
    "Squeeze": (21, (23, 24, 25)),
    "Unsqueeze": (13, (21, 23, 24, 25)),
    "Transpose": (13, (21, 23, 24, 25)),
    "ConstantOfShape": (9, (20, 21, 23, 24, 25)),
    "Equal": (13, (19,)),
    "IsInf": (10, (20,)),
    "IsNaN": (13, (20,)),
    # opset 22 added bfloat16 to these
    "Conv": (11, (22,)),
    "ConvTranspose": (11, (22,)),
    "MaxPool": (12, (22,)),
    "GlobalAveragePool": (1, (22,)),
    "Dropout": (13, (22,)),
    "InstanceNormalization": (6, (22,)),
    "Elu": (6, (22,)),
    "Selu": (6, (22,)),
    "Softplus": (1, (22,)),
    "Softsign": (1, (22,)),
    "HardSigmoid": (6, (22,)),
    "HardSwish": (14, (22,)),
    "Round": (11, (22,)),
}
REDUCE_AXES_AS_INPUT = {op: (18,) for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMean",
                                             "ReduceProd", "ReduceSumSquare")}
REDUCE_AXES_AS_INPUT.update(ReduceMax=(18, 20), ReduceMin=(18, 20))

_registered = False


class ReshapeAllowZero(nn.Module):
    """ONNX ``Reshape`` with ``allowzero=1``: a 0 in the shape is a dimension of size 0."""

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return torch.reshape(x, [int(d) for d in shape])


def _reshape(node, graph) -> OperationConverterResult:
    module = ReshapeAllowZero() if node.attributes.get("allowzero", 0) == 1 else OnnxReshape()
    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node=node))


def _average_pool(node, graph) -> OperationConverterResult:
    if any(d != 1 for d in node.attributes.get("dilations", [])):
        raise NotImplementedError("AveragePool with dilations other than 1 is not supported")
    return get_converter(operation_type="AveragePool", version=11)(node, graph)


def _pad(node, graph) -> OperationConverterResult:
    if len(node.input_values) > 3 and node.input_values[3]:
        raise NotImplementedError("Pad with an \"axes\" input is not supported")
    if node.attributes.get("mode", "constant") == "wrap":
        raise NotImplementedError("Pad in \"wrap\" mode is not supported")
    return get_converter(operation_type="Pad", version=13)(node, graph)


def _reduce(node, graph) -> OperationConverterResult:
    """``Reduce*`` since opset 18: the axes are an optional constant input, not an attribute."""
    axes = None
    if len(node.input_values) > 1 and node.input_values[1]:
        try:
            axes = [int(a) for a in torch.as_tensor(get_const_value(node.input_values[1], graph)).view(-1)]
        except KeyError:
            raise NotImplementedError(f"{node.operation_type} with axes computed at run time "
                                      "is not supported") from None
    mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
    if not axes and node.attributes.get("noop_with_empty_axes", 0) == 1:
        return OperationConverterResult(torch_module=nn.Identity(), onnx_mapping=mapping)
    module = OnnxReduceStaticAxes(operation_type=node.operation_type, axes=axes,
                                  keepdims=node.attributes.get("keepdims", 1))
    return OperationConverterResult(torch_module=module, onnx_mapping=mapping)


def _gelu(node, graph) -> OperationConverterResult:
    approximate = node.attributes.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise NotImplementedError(f"Gelu with approximate={approximate!r} is not supported")
    return OperationConverterResult(torch_module=nn.GELU(approximate=approximate),
                                    onnx_mapping=onnx_mapping_from_node(node=node))


def _register(op: str, versions, converter) -> None:
    for version in versions:
        try:
            add_converter(operation_type=op, version=version)(converter)
        except ValueError:  # "already registered": onnx2torch converts this version itself
            pass


def register_converters() -> None:
    """Add the converters above to onnx2torch's registry (once per process)."""
    global _registered
    if _registered:
        return
    for op, (base, later) in SAME_SEMANTICS.items():
        _register(op, later, get_converter(operation_type=op, version=base))
    _register("Reshape", (19, 21, 23, 24, 25), _reshape)
    _register("AveragePool", (19, 22), _average_pool)
    _register("Pad", (18, 19, 21, 23, 24, 25), _pad)
    for op, versions in REDUCE_AXES_AS_INPUT.items():
        _register(op, versions, _reduce)
    _register("Gelu", (20,), _gelu)
    _registered = True


def _constant_values(graph) -> dict[str, list[int]]:
    """Integer constants of a graph (initializers and ``Constant`` nodes), by name."""
    from onnx import numpy_helper  # lazy: the optional onnx extra

    values = {t.name: t for t in graph.initializer}
    values.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    out = {}
    for name, tensor in values.items():
        if tensor.data_type == 7 and len(tensor.dims) <= 1:  # INT64 vector: a shape
            out[name] = [int(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
    return out


def relax_reshape_allowzero(model) -> None:
    """Drop ``allowzero=1`` from ``Reshape`` nodes whose shape is a constant without a 0.

    ``allowzero`` only changes what a 0 in the shape means; without one the two are the same
    operation. onnx2torch's converter of ``Reshape`` v14 (what opset 18 uses) refuses
    ``allowzero=1``, which torch's default exporter writes on every reshape.
    """
    constants = _constant_values(model.graph)
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape = constants.get(node.input[1])
        if shape is None or 0 in shape:
            continue
        keep = [a for a in node.attribute if a.name != "allowzero"]
        del node.attribute[:]
        node.attribute.extend(keep)
