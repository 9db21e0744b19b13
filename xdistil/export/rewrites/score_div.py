"""Attention scores: scale by a division, as the PyTorch exports the matcher knows do."""
import numpy as np

from xdistil.export.graph_edit import add_initializer, constant, is_scalar


class ScoreScaleToDiv:
    """HF TF BERT scales the scores with a Mul by 1/sqrt(d) (grappler turns the divide into a
    multiply); the mask branch is a Mul too, and the attention matcher takes the first Mul parent
    of the score Add, which would be the mask branch. As a Div the scaling is unambiguous::

        MatMul(q, k^T) --> Mul(1/sqrt d) --> [Add(., mask_bias) -->] Softmax
                                   ==>
        MatMul(q, k^T) --> Div(sqrt d) --> [Add(., mask_bias) -->] Softmax

    Exact up to float rounding.
    """

    name = "score_div"

    def apply(self, m, shapes) -> int:
        output_name_to_node = m.output_name_to_node()
        count = 0
        for softmax in m.get_nodes_by_op_type("Softmax"):
            before = output_name_to_node.get(softmax.input[0])
            if before is None:
                continue
            candidates = [before] if before.op_type != "Add" else [
                output_name_to_node[name] for name in before.input if name in output_name_to_node]
            for mul in candidates:
                if mul.op_type != "Mul":
                    continue
                values = [constant(m, name) for name in mul.input]
                producers = [output_name_to_node.get(name) for name in mul.input]
                for i in (0, 1):
                    scores = producers[1 - i]
                    if (is_scalar(values[i]) and float(values[i].reshape(-1)[0]) > 0
                            and scores is not None and scores.op_type == "MatMul"):
                        divisor = np.asarray(1.0 / values[i].reshape(-1)[0], dtype=values[i].dtype)
                        mul.op_type = "Div"
                        mul.input[:] = [scores.output[0], add_initializer(m, "score_divisor", divisor)]
                        count += 1
                        break
        return count
