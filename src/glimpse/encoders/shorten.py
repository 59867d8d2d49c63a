"""Give a fixed-length ONNX text graph (immich's ``int32[1, 77]``) a dynamic sequence axis.

Why: immich's exporter traces the text tower with a static ``[1, context_length]`` input, so every query runs
all 77 positions through the transformer (4x the work of a 7-token query, ~40 ms instead of ~10 ms for B/32).
For a causal text tower that pools its end-of-text position (CLIP: ``families.ModelFamily.text_pools_eot``)
the positions after the end-of-text token change nothing, so the same graph fed only the batch's real length
gives the same vectors. This module rewrites the graph so that it accepts that shorter input; the caller
(``glimpse.encoders.onnx``) checks the rewritten graph against the original on real queries before using it,
and uses it only for families whose rule says the cut is exact.

What the rewrite does (``S`` = the graph's fixed length, ``L`` = the fed length, computed by the graph from the
ids input's shape): the ids input's axis 1 becomes symbolic; every constant with an axis of size ``S`` (the
position embeddings, the causal mask, as the exporter or onnxruntime's constant folding left them) is sliced to
``L`` on that axis; every small integer constant holding the value ``S`` (reshape/expand shapes, slice ends) gets
``L`` in its place; stored intermediate shapes (``value_info``) are dropped. A graph the rules do not fit (a
product such as ``8 * S`` in a shape) gives a graph whose outputs differ, which the caller's check refuses.

Only ``google.protobuf`` is needed (onnxruntime depends on it; the ``onnx`` package is not in the light
install): the few fields of ``onnx.proto`` read here are declared below, and protobuf carries every other field
of the file through unchanged.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

#: ``TensorProto.DataType`` values used here
_FLOAT, _INT32, _INT64, _BOOL = 1, 6, 7, 9
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_INT_ATTRIBUTE = 2  # AttributeProto.AttributeType.INT
_INT_TYPES = {_INT32: "<i4", _INT64: "<i8"}
SEQUENCE_DIM = "glimpse_sequence"
_PREFIX = "glimpse_cut/"


@lru_cache(maxsize=1)
def _classes() -> dict[str, Any]:
    """Message classes for the subset of ``onnx.proto`` (proto2, same field numbers) this rewrite touches."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fd = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="glimpse_onnx_subset.proto", package="glimpse_onnx_subset",
                                              syntax="proto2")
    kinds = {"int64": fd.TYPE_INT64, "int32": fd.TYPE_INT32, "string": fd.TYPE_STRING, "bytes": fd.TYPE_BYTES}
    schema: dict[str, list[tuple[int, str, str, bool]]] = {  # number, name, type, repeated
        "Model": [(7, "graph", "Graph", False), (8, "opset_import", "Opset", True)],
        "Opset": [(1, "domain", "string", False), (2, "version", "int64", False)],
        "Graph": [(1, "node", "Node", True), (5, "initializer", "Tensor", True), (11, "input", "ValueInfo", True),
                  (12, "output", "ValueInfo", True), (13, "value_info", "ValueInfo", True)],
        "Node": [(1, "input", "string", True), (2, "output", "string", True), (3, "name", "string", False),
                 (4, "op_type", "string", False), (5, "attribute", "Attribute", True), (7, "domain", "string", False)],
        "Attribute": [(1, "name", "string", False), (3, "i", "int64", False), (5, "t", "Tensor", False),
                      (20, "type", "int32", False)],
        "Tensor": [(1, "dims", "int64", True), (2, "data_type", "int32", False), (5, "int32_data", "int32", True),
                   (7, "int64_data", "int64", True), (8, "name", "string", False), (9, "raw_data", "bytes", False),
                   (14, "data_location", "int32", False)],
        "ValueInfo": [(1, "name", "string", False), (2, "type", "Type", False)],
        "Type": [(1, "tensor_type", "TensorType", False)],
        "TensorType": [(1, "elem_type", "int32", False), (2, "shape", "Shape", False)],
        "Shape": [(1, "dim", "Dim", True)],
        "Dim": [(1, "dim_value", "int64", False), (2, "dim_param", "string", False)],
    }
    for name, fields in schema.items():
        message = file.message_type.add(name=name)
        for number, field, kind, repeated in fields:
            entry = message.field.add(name=field, number=number,
                                      label=fd.LABEL_REPEATED if repeated else fd.LABEL_OPTIONAL)
            if kind in kinds:
                entry.type = kinds[kind]
            else:
                entry.type, entry.type_name = fd.TYPE_MESSAGE, f".glimpse_onnx_subset.{kind}"
            if field in ("int32_data", "int64_data"):
                entry.options.packed = True  # as onnx.proto declares them
        if name == "Dim":  # dim_value / dim_param are a oneof in onnx.proto
            message.oneof_decl.add(name="value")
            for entry in message.field:
                entry.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"glimpse_onnx_subset.{name}"))
            for name in schema}


def _tensor(name: str, values: np.ndarray, data_type: int) -> Any:
    dtype = {_INT64: "<i8", _INT32: "<i4", _BOOL: "?", _FLOAT: "<f4"}[data_type]
    array = np.ascontiguousarray(values, dtype=dtype)
    return _classes()["Tensor"](name=name, dims=list(array.shape), data_type=data_type, raw_data=array.tobytes())


def _int_values(tensor: Any) -> np.ndarray | None:
    """The values of a small inline integer tensor (``None`` for other tensors)."""
    dtype = _INT_TYPES.get(tensor.data_type)
    if dtype is None or tensor.data_location == _EXTERNAL or len(tensor.dims) > 1:
        return None
    if tensor.raw_data:
        values = np.frombuffer(tensor.raw_data, dtype=dtype)
    else:
        values = np.asarray(tensor.int64_data if tensor.data_type == _INT64 else tensor.int32_data, dtype=dtype)
    return values.reshape([int(d) for d in tensor.dims])


def has_external_data(graph_bytes: bytes) -> bool:
    """True when the serialized graph keeps any weight in an external data file."""
    graph = _classes()["Model"].FromString(graph_bytes).graph
    return any(t.data_location == _EXTERNAL for t in graph.initializer)


def _static_length(model: Any, ids_name: str) -> int | None:
    value = next((v for v in model.graph.input if v.name == ids_name), None)
    dims = value.type.tensor_type.shape.dim if value is not None else []
    if len(dims) != 2 or dims[1].WhichOneof("value") != "dim_value" or dims[1].dim_value < 2:
        return None
    return int(dims[1].dim_value)


def cut_sequence_axis(graph_bytes: bytes, ids_name: str) -> bytes | None:
    """The serialized graph rewritten to take ``ids_name`` with any length up to its fixed one (see the module
    docstring), or ``None`` when the graph has no fixed sequence length or its operator set is too old (< 10).

    The caller must compare the result's outputs with the original's before trusting it.
    """
    classes = _classes()
    node_class = classes["Node"]
    model = classes["Model"].FromString(graph_bytes)
    fixed = _static_length(model, ids_name)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if fixed is None or opset < 10:
        return None
    graph = model.graph
    ids = next(v for v in graph.input if v.name == ids_name)
    ids.type.tensor_type.shape.dim[1].dim_param = SEQUENCE_DIM  # clears dim_value (oneof)
    # Constant nodes become initializers, so that one rule covers both ways an exporter stores a constant.
    kept = []
    for node in graph.node:
        attrs = list(node.attribute)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(attrs) == 1 \
                and attrs[0].name == "value" and attrs[0].HasField("t"):
            tensor = graph.initializer.add()
            tensor.CopyFrom(attrs[0].t)
            tensor.name = node.output[0]
        else:
            kept.append(node)
    del graph.node[:]

    def node(op: str, inputs: list[str], output: str) -> str:
        new.append(node_class(op_type=op, input=inputs, output=[output], name=output))
        return output

    new: list[Any] = []
    consts: list[Any] = [_tensor(_PREFIX + "one", np.array([1]), _INT64),
                         _tensor(_PREFIX + "two", np.array([2]), _INT64)]
    shape = node("Shape", [ids_name], _PREFIX + "ids_shape")
    length = node("Slice", [shape, _PREFIX + "one", _PREFIX + "two"], _PREFIX + "length")  # int64[1]: L
    scalar: str | None = None
    length_as: dict[int, str] = {_INT64: length}
    renames: dict[str, str] = {}
    shapes: dict[tuple[int, bytes], str] = {}
    for tensor in graph.initializer:
        axes = [axis for axis, size in enumerate(tensor.dims) if size == fixed]
        name = tensor.name
        if axes:  # data with a sequence axis (position embeddings, causal mask): sliced to L
            consts += [_tensor(f"{_PREFIX}{name}/starts", np.zeros(len(axes)), _INT64),
                       _tensor(f"{_PREFIX}{name}/axes", np.array(axes), _INT64)]
            ends = length
            if len(axes) > 1:
                ends = node("Concat", [length] * len(axes), f"{_PREFIX}{name}/ends")
                new[-1].attribute.add(name="axis", type=_INT_ATTRIBUTE, i=0)
            renames[name] = node("Slice", [name, f"{_PREFIX}{name}/starts", ends, f"{_PREFIX}{name}/axes"],
                                 f"{_PREFIX}{name}/cut")
            continue
        values = _int_values(tensor)
        if values is None or not (values == fixed).any():
            continue
        if values.ndim == 0:  # a scalar S (a Range limit, a loop bound): the scalar L
            if tensor.data_type != _INT64:
                continue
            if scalar is None:
                consts.append(_tensor(_PREFIX + "scalar", np.zeros(0), _INT64))  # the shape [] of a scalar
                scalar = node("Reshape", [length, _PREFIX + "scalar"], _PREFIX + "length_scalar")
            renames[name] = scalar
            continue
        if tensor.data_type not in length_as:  # int32 shapes: L cast once
            cast = node("Cast", [length], f"{_PREFIX}length_{tensor.data_type}")
            new[-1].attribute.add(name="to", type=_INT_ATTRIBUTE, i=tensor.data_type)
            length_as[tensor.data_type] = cast
        key = (tensor.data_type, values.tobytes())
        if key not in shapes:  # one Where per distinct shape (a B/32 has ~70 constants but ~6 values)
            consts.append(_tensor(f"{_PREFIX}{name}/is_length", values == fixed, _BOOL))
            shapes[key] = node("Where", [f"{_PREFIX}{name}/is_length", length_as[tensor.data_type], name],
                               f"{_PREFIX}{name}/cut")
        renames[name] = shapes[key]
    for item in kept:
        item.input[:] = [renames.get(name, name) for name in item.input]
    graph.node.extend(new + kept)  # the new nodes read only the ids input and constants: they go first
    graph.initializer.extend(consts)
    # Shape constants now read by no node (all but one of each group of equal ones) are dropped.
    used = {name for item in graph.node for name in item.input} | {value.name for value in graph.output}
    unused = [i for i, tensor in enumerate(graph.initializer) if tensor.name in renames and tensor.name not in used]
    for index in reversed(unused):
        del graph.initializer[index]
    del graph.value_info[:]  # shapes inferred for the fixed length; onnxruntime infers them again
    for value in graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if dim.WhichOneof("value") == "dim_value" and dim.dim_value == fixed:
                dim.dim_param = SEQUENCE_DIM
    return model.SerializeToString()

