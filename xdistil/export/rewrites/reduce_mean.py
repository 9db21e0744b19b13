"""LayerNorm moments: GlobalAveragePool over a rank-3 tensor is a ReduceMean over its last axis."""
from onnx import helper

from xdistil.export.graph_edit import int64_vector


class GlobalAveragePoolToReduceMean:
    """tf2onnx's global-pool optimizer turns the two ReduceMeans of `tf.nn.moments` into
    GlobalAveragePool, which no LayerNormalization matcher knows::

        x [B, S, H] --> GlobalAveragePool --> mean [B, S, 1]
                                   ==>
        x [B, S, H] --> ReduceMean(axes=[-1], keepdims=1) --> mean [B, S, 1]
    """

    name = "reduce_mean"

    def apply(self, m, shapes) -> int:
        count = 0
        for node in m.get_nodes_by_op_type("GlobalAveragePool"):
            if len(shapes.get(node.input[0], ())) != 3:
                continue
            inputs = [node.input[0]]
            attributes = {"keepdims": 1}
            if m.get_opset_version() >= 18:
                inputs.append(int64_vector(m, "reduce_last_axis", [-1]))
            else:
                attributes["axes"] = [-1]
            m.add_node(helper.make_node("ReduceMean", inputs, list(node.output),
                                        name=m.create_node_name("ReduceMean"), **attributes))
            m.remove_node(node)
            count += 1
        return count
