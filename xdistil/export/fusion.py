"""Fuse a tf2onnx graph of a HuggingFace TF BERT into onnxruntime's transformer operators.

onnxruntime's transformer optimizer (`optimize_model`, model_type "bert" or "bert_tf")
fuses nothing on the graph tf2onnx makes of a HF TF BERT, because its pattern matchers
were written for PyTorch exports (and for TF1-era BERT graphs). The tf2onnx graph differs in:

1. Dense layers: Keras `Dense` on a 3-D input is `tf.tensordot`, which tf2onnx exports as
   Reshape([-1, K]) -> MatMul -> Reshape(Concat(Shape(x)[:-1], [N])). The matchers expect
   MatMul -> Add(bias) on the 3-D tensor.
2. Zero biases: grappler folds `x + 0`, so a bias that is exactly zero (freshly initialized
   models) leaves no Add at all (and the Q/K/V MatMul then feeds the head-split Reshape
   directly), and every "Add, MatMul" path fails.
3. LayerNorm: Keras computes `tf.nn.moments` + `batch_normalization`; tf2onnx's global-pool
   optimizer turns both ReduceMeans into GlobalAveragePool, which no LayerNorm matcher knows.
4. GELU: TF's exact GELU is `0.5 * x * erfc(-x / sqrt 2)`; after the Erfc handler that is
   Mul(Mul(0.5, x), Sub(1, Erf(Mul(Neg(x), 1/sqrt 2)))), not the Div/Erf/Add/Mul pattern.
5. Attention scores: HF TF BERT scales with a Mul by 1/sqrt(d) (grappler turns the divide
   into a multiply), and since the mask branch is also a Mul, the matcher's "first Mul
   parent" lookup picks the wrong branch. HF's `stable_softmax` adds 1e-9 to the scores, which
   grappler reassociates into the mask branch (Add(1e-9, mask)), and the mask is expanded
   with Reshape([0, 1, 1, -1]) instead of two Unsqueezes.
6. Position ids: Range over a sequence length sliced from Shape(embeddings) instead of the
   Shape(input_ids) -> Gather -> Range -> Expand pattern that EmbedLayerNormalization expects.

`canonicalize_tf_bert_graph` rewrites each of these into the equivalent PyTorch-style form
(GELU straight into com.microsoft Gelu), after which the stock "bert" optimizer fuses
Attention, SkipLayerNormalization, BiasGelu and EmbedLayerNormalization. `optimize_for_cpu`
then checks the fused model against the unfused one before writing it.
"""
import contextlib
import logging
import math

import numpy as np
import onnx
from onnx import helper

from xdistil.export.cls_pruning import prune_last_layer_to_cls
from xdistil.export.graph_edit import add_initializer, constant, int64_vector
from xdistil.io_utils import atomic_write_via

GELU_OPS = ("Gelu", "BiasGelu", "FastGelu")
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization",
             "EmbedLayerNormalization") + GELU_OPS


def _onnx_model(model: onnx.ModelProto):
    from onnxruntime.transformers.onnx_model import OnnxModel

    return OnnxModel(model)


def _is_scalar(value, expected=None, tol=1e-6) -> bool:
    return (value is not None and value.size == 1
            and (expected is None or abs(float(value.reshape(-1)[0]) - expected) <= tol))


def _tensor_shapes(model: onnx.ModelProto) -> dict:
    """Shape (a list of int or None per dim) of every tensor onnx shape inference can tell."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input):
        if info.type.tensor_type.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None
                                 for d in info.type.tensor_type.shape.dim]
    return shapes


def _global_average_pool_to_reduce_mean(m, shapes) -> int:
    """GlobalAveragePool on a rank-3 tensor is ReduceMean over the last axis (LayerNorm moments)."""
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


def _producer(name, output_name_to_node, skip=("Cast",)):
    """The node producing `name`, looking through `skip` ops (single-input ones)."""
    node = output_name_to_node.get(name)
    while node is not None and node.op_type in skip:
        node = output_name_to_node.get(node.input[0])
    return node


def _leading_dims_source(m, shape_name, output_name_to_node, num_dims):
    """If `shape_name` is Shape(x)[:num_dims] (through Casts), return x, else None."""
    node = _producer(shape_name, output_name_to_node)
    if node is None:
        return None
    if node.op_type == "Gather":
        indices = constant(m, node.input[1])
        if indices is None or list(indices.reshape(-1)) != list(range(num_dims)):
            return None
    elif node.op_type == "Slice":
        starts, ends = constant(m, node.input[1]), constant(m, node.input[2])
        if not (_is_scalar(starts, 0) and _is_scalar(ends, num_dims)) or len(node.input) > 3:
            return None
    else:
        return None
    shape = _producer(node.input[0], output_name_to_node)
    return shape.input[0] if shape is not None and shape.op_type == "Shape" else None


def _restores_leading_dims(m, reshape, x, rank, last_dim, output_name_to_node) -> bool:
    """True if `reshape` targets Concat(Shape(x)[:rank - 1], [last_dim]) (through Casts)."""
    concat = _producer(reshape.input[1], output_name_to_node)
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        return False
    return (_is_scalar(constant(m, concat.input[1]), last_dim)
            and _leading_dims_source(m, concat.input[0], output_name_to_node, rank - 1) == x)


def _fold_tensordot_reshapes(m, shapes) -> int:
    """MatMul(Reshape(x, [-1, K]), W) ==> MatMul(x, W), dropping a following Reshape back to 3-D.

    Keras Dense on 3-D inputs is tf.tensordot. Reshapes only see row-major element order, so
    the MatMul's consumers (all Reshapes) get the same values either way, provided x's last
    dim is K: known from shape inference, or implied by a consumer restoring Shape(x)[:-1].
    """
    output_name_to_node = m.output_name_to_node()
    input_name_to_nodes = m.input_name_to_nodes()
    count = 0
    for matmul in m.get_nodes_by_op_type("MatMul"):
        weight = constant(m, matmul.input[1])
        flatten = output_name_to_node.get(matmul.input[0])
        if weight is None or weight.ndim != 2 or flatten is None or flatten.op_type != "Reshape":
            continue
        x = flatten.input[0]
        x_shape = shapes.get(x, [])
        flat_shape = constant(m, flatten.input[1])
        if flat_shape is None or list(flat_shape) != [-1, weight.shape[0]] or len(x_shape) < 3:
            continue
        consumers = input_name_to_nodes.get(matmul.output[0], [])
        if not consumers or any(c.op_type != "Reshape" for c in consumers):
            continue
        if m.find_graph_output(matmul.output[0]) is not None:
            continue
        restoring = [c for c in consumers
                     if _restores_leading_dims(m, c, x, len(x_shape), weight.shape[1], output_name_to_node)]
        if x_shape[-1] != weight.shape[0] and not restoring:
            continue
        matmul.input[0] = x
        if len(consumers) == 1 and restoring:
            matmul.output[0] = restoring[0].output[0]
            m.remove_node(restoring[0])
        count += 1
    return count


def _has_bias_add(m, matmul, input_name_to_nodes) -> bool:
    consumers = input_name_to_nodes.get(matmul.output[0], [])
    if len(consumers) != 1 or consumers[0].op_type != "Add":
        return False
    values = [constant(m, name) for name in consumers[0].input]
    return any(value is not None and value.ndim == 1 for value in values)


def _add_missing_biases(m) -> int:
    """Give every dense MatMul without a bias Add an Add of zeros (grappler folded `x + 0`)."""
    input_name_to_nodes = m.input_name_to_nodes()
    count = 0
    for matmul in m.get_nodes_by_op_type("MatMul"):
        weight = constant(m, matmul.input[1])
        if weight is None or weight.ndim != 2 or _has_bias_add(m, matmul, input_name_to_nodes):
            continue
        zeros = add_initializer(m, "zero_bias", np.zeros(weight.shape[1], dtype=weight.dtype))
        output = matmul.output[0]
        matmul.output[0] = m.create_node_name("MatMul", output + "_no_bias")
        m.add_node(helper.make_node("Add", [matmul.output[0], zeros], [output],
                                    name=m.create_node_name("Add", "zero_bias_add")))
        count += 1
    return count


def _drop_softmax_shifts(m) -> int:
    """Bypass Add(x, scalar c) when it only feeds Softmax, directly or through one more Add.

    softmax(x + c) == softmax(x). HF's `stable_softmax` adds 1e-9 to the scores, and grappler
    may reassociate it into the shared mask branch: Add(scores, Add(1e-9, mask)).
    """
    input_name_to_nodes = m.input_name_to_nodes()

    def only_softmax(name, through_add):
        consumers = input_name_to_nodes.get(name, [])
        return bool(consumers) and m.find_graph_output(name) is None and all(
            c.op_type == "Softmax"
            or (through_add and c.op_type == "Add" and only_softmax(c.output[0], through_add=False))
            for c in consumers)

    count = 0
    for add in m.get_nodes_by_op_type("Add"):
        values = [constant(m, name) for name in add.input]
        is_const = [value is not None for value in values]
        if len(add.input) != 2 or all(is_const) or not any(_is_scalar(v) for v in values):
            continue
        if only_softmax(add.output[0], through_add=True):
            data = add.input[0] if values[0] is None else add.input[1]
            m.replace_input_of_all_nodes(add.output[0], data)
            count += 1
    return count


def _scores_scale_to_div(m) -> int:
    """Softmax <- [Add <-] Mul(QK^T, 1/sqrt d)  ==>  Div(QK^T, sqrt d).

    The attention matcher takes the first Mul parent of the score Add, which would be the
    mask branch; as a Div the scaling is unambiguous.
    """
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
                if (_is_scalar(values[i]) and float(values[i].reshape(-1)[0]) > 0
                        and scores is not None and scores.op_type == "MatMul"):
                    divisor = np.asarray(1.0 / values[i].reshape(-1)[0], dtype=values[i].dtype)
                    mul.op_type = "Div"
                    mul.input[:] = [scores.output[0], add_initializer(m, "score_divisor", divisor)]
                    count += 1
                    break
    return count


def _mask_reshape_to_unsqueeze(m, shapes) -> int:
    """Reshape(mask[B, S], [0, 1, 1, -1]) ==> Unsqueeze(Unsqueeze(mask, 1), 2)."""
    count = 0
    for softmax in m.get_nodes_by_op_type("Softmax"):
        for index in (0, 1):
            path = m.match_parent_path(softmax, ["Add", "Mul", "Sub", "Cast", "Reshape"], [0, index, 0, 1, 0])
            if path is None:
                continue
            reshape = path[-1]
            shape = constant(m, reshape.input[1])
            if shape is None or list(shape) != [0, 1, 1, -1] or len(shapes.get(reshape.input[0], ())) != 2:
                continue
            middle = m.create_node_name("Unsqueeze", "mask_unsqueeze") + "_out"
            m.add_nodes([
                helper.make_node("Unsqueeze", [reshape.input[0], int64_vector(m, "axis", [1])], [middle],
                                 name=m.create_node_name("Unsqueeze")),
                helper.make_node("Unsqueeze", [middle, int64_vector(m, "axis", [2])], list(reshape.output),
                                 name=m.create_node_name("Unsqueeze")),
            ])
            m.remove_node(reshape)
            count += 1
    return count


def _other_input(node, name):
    return node.input[1] if node.input[0] == name else node.input[0]


def _fuse_erfc_gelu(m) -> int:
    """Mul(Mul(0.5, x), Sub(1, Erf(Mul(Neg(x), 1/sqrt 2))))  ==>  com.microsoft Gelu(x)."""
    output_name_to_node = m.output_name_to_node()
    input_name_to_nodes = m.input_name_to_nodes()
    count = 0
    for erf in m.get_nodes_by_op_type("Erf"):
        scaled = output_name_to_node.get(erf.input[0])
        if scaled is None or scaled.op_type != "Mul":
            continue
        neg = [output_name_to_node.get(name) for name in scaled.input]
        neg = [node for node in neg if node is not None and node.op_type == "Neg"]
        if len(neg) != 1 or not _is_scalar(constant(m, _other_input(scaled, neg[0].output[0])),
                                           1 / math.sqrt(2)):
            continue
        x = neg[0].input[0]
        subs = input_name_to_nodes.get(erf.output[0], [])
        if len(subs) != 1 or subs[0].op_type != "Sub" or subs[0].input[1] != erf.output[0]:
            continue
        if not _is_scalar(constant(m, subs[0].input[0]), 1.0):
            continue
        outer = input_name_to_nodes.get(subs[0].output[0], [])
        if len(outer) != 1 or outer[0].op_type != "Mul":
            continue
        half = output_name_to_node.get(_other_input(outer[0], subs[0].output[0]))
        if half is None or half.op_type != "Mul" or x not in half.input:
            continue
        if not _is_scalar(constant(m, _other_input(half, x)), 0.5):
            continue
        m.add_node(helper.make_node("Gelu", [x], list(outer[0].output), name=m.create_node_name("Gelu"),
                                    domain="com.microsoft"))
        m.remove_node(outer[0])
        count += 1
    return count


def _sequence_length_of(m, name, output_name_to_node, input_ids) -> bool:
    """True if `name` is dim 1 of Shape(input_ids) or of Shape(Gather(table, input_ids))."""
    node = _producer(name, output_name_to_node, skip=("Squeeze", "Cast"))
    if node is None or node.op_type not in ("Slice", "Gather"):
        return False
    if node.op_type == "Slice" and not (_is_scalar(constant(m, node.input[1]), 1)
                                        and _is_scalar(constant(m, node.input[2]), 2)):
        return False
    if node.op_type == "Gather" and not _is_scalar(constant(m, node.input[1]), 1):
        return False
    shape = _producer(node.input[0], output_name_to_node)
    if shape is None or shape.op_type != "Shape":
        return False
    embedding = output_name_to_node.get(shape.input[0])
    return shape.input[0] == input_ids or (embedding is not None and embedding.op_type == "Gather"
                                           and embedding.input[1] == input_ids)


def _position_ids_from_input_ids(m) -> int:
    """Gather(pos, Unsqueeze(Range(0, seq_len, 1)))  ==>  Gather(pos, Expand(..., Shape(input_ids)))."""
    if m.find_graph_input("input_ids") is None:
        return 0
    output_name_to_node = m.output_name_to_node()
    count = 0
    for gather in m.get_nodes_by_op_type("Gather"):
        path = m.match_parent_path(gather, ["Unsqueeze", "Range"], [1, 0], output_name_to_node)
        if path is None or constant(m, gather.input[0]) is None:
            continue
        unsqueeze, range_node = path
        if len(unsqueeze.input) != 2 or not _is_scalar(constant(m, unsqueeze.input[1]), 0):
            continue
        start, delta = constant(m, range_node.input[0]), constant(m, range_node.input[2])
        if not (_is_scalar(start, 0) and _is_scalar(delta, 1)):
            continue
        if not _sequence_length_of(m, range_node.input[1], output_name_to_node, "input_ids"):
            continue
        prefix = m.create_node_name("PositionIds", "position_ids")
        zero, one = (add_initializer(m, "position", np.array(v, np.int64)) for v in (0, 1))
        nodes = [
            helper.make_node("Shape", ["input_ids"], [prefix + "_shape"], name=prefix + "_Shape"),
            helper.make_node("Gather", [prefix + "_shape", one], [prefix + "_seq_len"],
                             name=prefix + "_Gather", axis=0),
            helper.make_node("Range", [zero, prefix + "_seq_len", one], [prefix + "_range"],
                             name=prefix + "_Range"),
            helper.make_node("Unsqueeze", [prefix + "_range", int64_vector(m, "axis", [0])],
                             [prefix + "_row"], name=prefix + "_Unsqueeze"),
            helper.make_node("Expand", [prefix + "_row", prefix + "_shape"], [prefix + "_ids"],
                             name=prefix + "_Expand"),
        ]
        m.add_nodes(nodes)
        gather.input[1] = prefix + "_ids"
        count += 1
    return count


def canonicalize_tf_bert_graph(model: onnx.ModelProto) -> dict:
    """Rewrite a tf2onnx BERT graph in place into the PyTorch-style patterns ORT fuses.

    The rewrites keep the arithmetic, except that a constant shift before softmax is dropped
    and the score scaling becomes a division. Needs opset >= 13. Returns how often each
    rewrite applied.
    """
    m = _onnx_model(model)
    if m.get_opset_version() < 13:
        raise ValueError(f"graph fusion needs an ONNX opset >= 13, got {m.get_opset_version()}")
    shapes = _tensor_shapes(model)  # before any rewrite: rewrites keep tensor names, not node order
    counts = {"reduce_mean": _global_average_pool_to_reduce_mean(m, shapes)}
    counts["tensordot"] = _fold_tensordot_reshapes(m, shapes)
    counts["zero_bias"] = _add_missing_biases(m)
    counts["softmax_shift"] = _drop_softmax_shifts(m)
    counts["score_div"] = _scores_scale_to_div(m)
    counts["mask_unsqueeze"] = _mask_reshape_to_unsqueeze(m, shapes)
    counts["gelu"] = _fuse_erfc_gelu(m)
    counts["position_ids"] = _position_ids_from_input_ids(m)
    m.prune_graph(allow_remove_graph_inputs=False)
    m.topological_sort()
    return counts


def fused_operator_counts(model: onnx.ModelProto) -> dict:
    """How many of each fused transformer operator the graph holds."""
    counts = dict.fromkeys(FUSED_OPS, 0)
    for node in model.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
    return counts


def _probe_features(model: onnx.ModelProto, seq_len: int = 16, seed: int = 0) -> dict:
    """Three rows of random ids below the word-embedding size: unpadded, right- and left-padded."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    vocab = min((initializers[node.input[0]].dims[0] for node in model.graph.node
                 if node.op_type == "Gather" and node.input[1] == "input_ids"
                 and node.input[0] in initializers), default=2)
    rng = np.random.default_rng(seed)
    positions = np.arange(seq_len)
    rows = [positions < seq_len, positions < seq_len // 2, positions >= seq_len // 3]
    mask = np.stack(rows).astype(np.int64)
    return {"input_ids": rng.integers(0, vocab, mask.shape) * mask, "attention_mask": mask,
            "token_type_ids": np.broadcast_to(positions >= seq_len // 2, mask.shape).astype(np.int64)}


def fused_parity(unfused_path, fused_path) -> float:
    """Max abs logit difference between two models on random ragged probe inputs."""
    from xdistil.export.parity import max_abs_logit_diff, onnx_session, run_onnx

    features = _probe_features(onnx.load(str(unfused_path), load_external_data=False))
    reference = run_onnx(onnx_session(unfused_path), features)
    fused = run_onnx(onnx_session(fused_path), features)
    return max_abs_logit_diff(reference, fused, features["attention_mask"])


@contextlib.contextmanager
def _quiet_logger(name):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def optimize_for_cpu(onnx_path, out_path, num_heads: int, hidden_size: int, model_kind: str = "bert",
                     parity_tolerance: float = 1e-4, cls_only_last_layer: bool = False) -> dict:
    """Canonicalize the tf2onnx graph, run onnxruntime's transformer fusions, save to `out_path`.

    With `cls_only_last_layer` (sequence classifiers, which read position 0 only), the last layer
    is then computed at that position alone (see `cls_pruning`); "cls_only_last_layer" in the
    result says whether the graph allowed it.

    The fused model is checked against the unfused one on random inputs and is not written
    if their logits differ by more than `parity_tolerance`. Returns the fused operator counts
    (see `fused_operator_counts`), "rewrites" (canonicalization counts) and "parity_max_abs_diff".
    The attention mask stays a 2-D 0/1 input, so any padding side works.
    """
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model = onnx.load(str(onnx_path))
    rewrites = canonicalize_tf_bert_graph(model)
    options = FusionOptions(model_kind)
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    # It warns that a tf2onnx graph is not "pytorch"; after canonicalization "bert" is right.
    with _quiet_logger("onnxruntime.transformers.optimizer"):
        optimizer = optimize_model(model, model_type=model_kind, num_heads=num_heads, hidden_size=hidden_size,
                                   optimization_options=options, opt_level=0, use_gpu=False)
    pruned = cls_only_last_layer and prune_last_layer_to_cls(optimizer)
    counts = fused_operator_counts(optimizer.model)
    counts["rewrites"] = rewrites
    counts["cls_only_last_layer"] = pruned

    def save_checked(tmp):
        optimizer.save_model_to_file(tmp)  # also adds the com.microsoft opset import
        counts["parity_max_abs_diff"] = fused_parity(onnx_path, tmp)
        if not counts["parity_max_abs_diff"] <= parity_tolerance:
            raise RuntimeError(f"fused model differs from {onnx_path} by {counts['parity_max_abs_diff']:.3g} "
                               f"> {parity_tolerance:g} in logits; not writing {out_path}")

    atomic_write_via(out_path, save_checked)
    return counts


def require_fusion(counts: dict, num_layers: int) -> None:
    """Raise if a BERT-family model with `num_layers` layers did not get its fused operators.

    Needs at least one Attention, one Gelu-family op and two SkipLayerNormalizations per layer.
    """
    attention = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0)
    gelu = sum(counts.get(op, 0) for op in GELU_OPS)
    skip_layer_norm = counts.get("SkipLayerNormalization", 0)
    missing = []
    if attention < num_layers:
        missing.append(f"Attention {attention} < {num_layers}")
    if gelu < num_layers:
        missing.append(f"Gelu/BiasGelu/FastGelu {gelu} < {num_layers}")
    if skip_layer_norm < 2 * num_layers:
        missing.append(f"SkipLayerNormalization {skip_layer_norm} < {2 * num_layers}")
    if missing:
        raise RuntimeError(f"graph fusion incomplete for {num_layers} layers: {'; '.join(missing)} "
                           f"(fused operator counts: {counts})")
