"""Rewrites that turn a tf2onnx graph of a HF TF BERT into the patterns onnxruntime's optimizer fuses.

onnxruntime's transformer optimizer (`optimize_model`, model_type "bert") fuses nothing on the
graph tf2onnx makes of a HF TF BERT: its pattern matchers were written for PyTorch exports.
Each module here rewrites one TF-specific pattern into the equivalent PyTorch-style one (see the
before ==> after picture in each class), after which the stock optimizer fuses Attention,
SkipLayerNormalization, BiasGelu and EmbedLayerNormalization in every layer.

A rewrite is a small class with a `name` and `apply(model, shapes) -> int`: it edits `model` (an
onnxruntime `OnnxModel`) in place, given the tensor shapes inferred before any rewrite, and
returns how often it applied. Nodes it makes unused are left for the final prune.
"""
import onnx

from xdistil.export.graph_edit import tensor_shapes
from xdistil.export.rewrites.gelu import ErfcGeluToGelu
from xdistil.export.rewrites.mask_unsqueeze import MaskReshapeToUnsqueeze
from xdistil.export.rewrites.position_ids import PositionIdsFromInputIds
from xdistil.export.rewrites.reduce_mean import GlobalAveragePoolToReduceMean
from xdistil.export.rewrites.score_div import ScoreScaleToDiv
from xdistil.export.rewrites.softmax_shift import SoftmaxShiftRemoval
from xdistil.export.rewrites.tensordot import TensordotReshapeFolding
from xdistil.export.rewrites.zero_bias import ZeroBiasRestoration

# In this order: the tensordot folding needs MatMuls whose consumers are all Reshapes (before a
# zero bias Add is put behind them); the mask path Softmax <- Add <- Mul <- Sub <- Cast <- Reshape
# only exists once the softmax shift is gone from between the score Add and the mask Mul.
REWRITES = (
    GlobalAveragePoolToReduceMean(),
    TensordotReshapeFolding(),
    ZeroBiasRestoration(),
    SoftmaxShiftRemoval(),
    ScoreScaleToDiv(),
    MaskReshapeToUnsqueeze(),
    ErfcGeluToGelu(),
    PositionIdsFromInputIds(),
)


def canonicalize_tf_bert_graph(model: onnx.ModelProto) -> dict:
    """Rewrite a tf2onnx BERT graph in place into the PyTorch-style patterns ORT fuses.

    The rewrites keep the arithmetic, except that a constant shift before softmax is dropped
    and the score scaling becomes a division. Needs opset >= 13. Returns how often each
    rewrite applied, by rewrite name.
    """
    from onnxruntime.transformers.onnx_model import OnnxModel

    m = OnnxModel(model)
    if m.get_opset_version() < 13:
        raise ValueError(f"graph fusion needs an ONNX opset >= 13, got {m.get_opset_version()}")
    shapes = tensor_shapes(model)  # before any rewrite: rewrites keep tensor names, not node order
    counts = {rewrite.name: rewrite.apply(m, shapes) for rewrite in REWRITES}
    m.prune_graph(allow_remove_graph_inputs=False)
    m.topological_sort()
    return counts
