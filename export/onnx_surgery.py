"""Pure helpers over an exported ONNX graph: where the backbone ends, and cast clean-up.

The reduced-precision variants treat two parts of :class:`~muselens.export.inference_graph.InferenceGraph`
differently: the backbone (almost all the compute) runs in fp16 or int8; everything computed
from its last feature map (dense class logits, activation, top-k, descriptor map, the final
L2-normalisation and the instance classifier) stays float32, where the ranking of cells and the
unit norm of the descriptor are decided. :func:`head_nodes` finds that second part by graph
structure, not by node names.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto

HEAD_OUTPUTS = ("activation", "descriptor_map", "class_logits")


def set_metadata(model: onnx.ModelProto, entries: dict[str, str]) -> None:
    """Set (replace) string ``metadata_props`` entries of an ONNX model."""
    for key, value in entries.items():
        if not isinstance(value, str):
            raise TypeError(f"metadata {key!r} must be a string, got {type(value).__name__}")
    keep = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)


def _producers(graph: onnx.GraphProto) -> dict[str, int]:
    return {out: i for i, node in enumerate(graph.node) for out in node.output if out}


def _ancestors(graph: onnx.GraphProto, producers: dict[str, int], tensor: str) -> set[str]:
    """Every tensor ``tensor`` is computed from (itself included)."""
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in producers:
            stack.extend(i for i in graph.node[producers[name]].input if i)
    return seen


def feature_map_tensor(model: onnx.ModelProto, outputs: tuple[str, ...] = HEAD_OUTPUTS) -> str:
    """The backbone's last feature map: the latest tensor (in node order) every one of
    ``outputs`` depends on. The exporter writes nodes in topological order."""
    graph = model.graph
    names = {o.name for o in graph.output}
    missing = [o for o in outputs if o not in names]
    if missing:
        raise ValueError(f"the model has no outputs {missing} (it has {sorted(names)})")
    producers = _producers(graph)
    common = set.intersection(*(_ancestors(graph, producers, o) for o in outputs))
    produced = [t for t in common if t in producers]
    if not produced:
        raise ValueError(f"outputs {list(outputs)} share no computed tensor")
    return max(produced, key=lambda t: producers[t])


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (converters select nodes by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_muselens_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that do not feed the feature map: everything after the backbone."""
    name_nodes(model)
    producers = _producers(model.graph)
    backbone = _ancestors(model.graph, producers, feature_map_tensor(model))
    return [n.name for n in model.graph.node if not any(o in backbone for o in n.output)]


def shape_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes off the data path: shape arithmetic and constants.

    The data path is everything reachable from the graph inputs without going through a
    ``Shape`` node (whose output describes a tensor rather than carrying its values). What is
    left computes sizes, e.g. the input-dependent "same" padding of the TensorFlow-ported
    backbones; quantizing those values would corrupt the padding.
    """
    name_nodes(model)
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    data: set[str] = set()
    stack = [i.name for i in graph.input]
    while stack:
        tensor = stack.pop()
        for node in consumers.get(tensor, ()):
            if node.op_type == "Shape" or node.name in data:
                continue
            data.add(node.name)
            stack.extend(o for o in node.output if o)
    return [n.name for n in graph.node if n.name not in data]


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _cast_to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def elide_cast_round_trips(model: onnx.ModelProto) -> int:
    """Remove ``float32 -> float16 -> float32`` Cast pairs; returns how many round trips went.

    A float16 converter that keeps some nodes in float32 still stores the tensors *between*
    them as float16, casting down and up around each kept node; the round trip only loses
    precision. Consumers are rewired to the original float32 tensor, a graph output keeps its
    name through an Identity, and nodes left without consumers are dropped.
    """
    graph = model.graph
    types = _elem_types(model)
    producers = _producers(graph)
    graph_outputs = {o.name for o in graph.output}
    rewire: dict[str, str] = {}
    kept_outputs = 0
    for node in graph.node:
        if _cast_to(node) != TensorProto.FLOAT:
            continue
        source = producers.get(node.input[0])
        if source is None:
            continue
        down = graph.node[source]
        if _cast_to(down) != TensorProto.FLOAT16 or types.get(down.input[0]) != TensorProto.FLOAT:
            continue
        if node.output[0] in graph_outputs:
            node.op_type = "Identity"
            del node.attribute[:]
            node.input[0] = down.input[0]
            kept_outputs += 1
        else:
            rewire[node.output[0]] = down.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rewire:
                node.input[i] = rewire[name]
    prune_unused(model)
    return len(rewire) + kept_outputs


def prune_unused(model: onnx.ModelProto) -> int:
    """Remove nodes whose outputs nobody reads (repeatedly: removing one can orphan another) and
    initializers no node reads; returns how many were removed. A quantizer that folds Clip nodes
    away leaves their min/max constants behind, and ONNX Runtime warns about each one whenever
    the model is loaded."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    removed = 0
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.output and not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
        removed += len(dead)
    used = {i for n in graph.node for i in n.input} | outputs
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return removed + len(unused)


def topological_sort(model: onnx.ModelProto) -> None:
    """Reorder nodes so each comes after the producers of its inputs (the checker requires it)."""
    graph = model.graph
    available = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            missing = sorted({i for n in pending for i in n.input if i not in available})[:5]
            raise ValueError(f"the graph has a cycle or dangling inputs {missing}")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for node in ready:
            ordered.append(node)
            available.update(node.output)
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)


def save_checked(model: onnx.ModelProto, dst: Path | str) -> Path:
    """Save atomically next to ``dst`` and run the full ONNX checker on the file: a model that
    fails the check, or a write cut short, never replaces what ``dst`` held."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.tmp-", suffix=".onnx", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst
