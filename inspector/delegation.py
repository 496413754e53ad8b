"""How a TFLite model is split between the XNNPACK delegate and TFLite's own kernels.

The LiteRT runtime hands every op XNNPACK supports to its delegate, in maximal connected *partitions*;
an op it refuses runs on TFLite's reference kernel, and each such op in the middle of the graph cuts the
model into one more partition, with tensors copied and converted at every cut. One partition is the fast
path; a split INT8 model can be slower than float32 (see ``training/export_graph.py`` and
docs/calibration.md). Ops left outside at the ends (the uint8 <-> int8 QUANTIZE of input and output, an
INT8 SOFTMAX on the class logits) split nothing and cost little.

The count is read from the interpreter the station would build (:class:`inspector.inference.ModelRunner`,
default delegates on): its node list holds the model's ops and, after them, one ``DELEGATE`` node per
partition whose inputs and outputs are the partition's boundary tensors. No TensorFlow needed.

Example:
    >>> d = delegation(Bundle.load("model.inspector").model)   # doctest: +SKIP
    >>> d.partitions, d.outside                                # doctest: +SKIP
    (1, {'QUANTIZE': 2, 'SOFTMAX': 1})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set

from inspector.inference import Backend, ModelRunner

DELEGATE_OP = "DELEGATE"


@dataclass(frozen=True)
class Delegation:
    """Delegate partitions of a model and the ops that run outside every partition."""

    partitions: int
    delegated_ops: int
    outside: Dict[str, int]  # op name -> count of ops on TFLite's own kernels

    @property
    def outside_ops(self) -> int:
        return sum(self.outside.values())

    def describe(self) -> Dict[str, Any]:
        return {
            "partitions": self.partitions,
            "delegated_ops": self.delegated_ops,
            "outside": dict(self.outside),
        }

    def __str__(self) -> str:
        rest = ", ".join(f"{name} {count}" for name, count in self.outside.items()) or "none"
        return f"{self.partitions} delegate partition(s) with {self.delegated_ops} ops; outside: {rest}"


def _covered(nodes: List[Dict[str, Any]], partition: Dict[str, Any], producer: Dict[int, int]) -> Set[int]:
    """Indices of the ops inside one partition: walk back from its outputs to its inputs."""
    stop = {int(t) for t in partition["inputs"]}
    todo = [int(t) for t in partition["outputs"]]
    seen: Set[int] = set()
    ops: Set[int] = set()
    while todo:
        tensor = todo.pop()
        if tensor in seen or tensor in stop or tensor not in producer:
            continue  # a partition input, a constant or a model input
        seen.add(tensor)
        op = producer[tensor]
        ops.add(op)
        todo.extend(int(t) for t in nodes[op]["inputs"] if int(t) >= 0)
    return ops


def delegation(model: bytes, threads: Optional[int] = 1, backend: Backend | str = Backend.AUTO) -> Delegation:
    """Count the delegate partitions of ``model`` and the ops left outside them, as the station loads it."""
    interpreter = ModelRunner(model, backend, threads).interpreter
    nodes = interpreter._get_ops_details()  # no public node listing in the Python API
    producer = {int(t): node["index"] for node in nodes if node["op_name"] != DELEGATE_OP for t in node["outputs"]}
    partitions = [node for node in nodes if node["op_name"] == DELEGATE_OP]
    inside: Set[int] = set()
    for partition in partitions:
        inside |= _covered(nodes, partition, producer)
    outside = Counter(
        node["op_name"] for node in nodes if node["op_name"] != DELEGATE_OP and node["index"] not in inside
    )
    return Delegation(len(partitions), len(inside), dict(sorted(outside.items())))
