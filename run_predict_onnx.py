"""Export a distilled student to fused int8 ONNX and serve it one request at a time on CPU:

    python run_predict_onnx.py --model_dir out/ner --do_export --pred_file DATA/test_sentences.txt --compare
"""
import sys

import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import app, flags, logging

from xdistil.data.errors import InputFormatError

flags.DEFINE_string("model_dir", None, "Model directory written by run_xtreme_distil.py or run_finetune.py.")
flags.DEFINE_bool("do_export", False, "Export, fuse, quantize and check again (done anyway if onnx/ is empty).")
flags.DEFINE_integer("opset", 17, "ONNX opset (17 or later).")
flags.DEFINE_bool("int64_inputs", False, "int64 model inputs instead of int32.")
flags.DEFINE_enum("quantization", "dynamic", ["dynamic", "static", "none"], "int8 quantization.")
flags.DEFINE_bool("per_channel", True, "Per-channel int8 weights (one scale per output column; --noper_channel: one per matrix).")
flags.DEFINE_bool("reduce_range", False, "7-bit weights (for CPUs without VNNI that saturate).")
flags.DEFINE_string("calibration_file", None, "Static quantization: calibration text (default: transfer file).")
flags.DEFINE_integer("calibration_size", 256, "Static quantization: calibration lines.")
flags.DEFINE_float("max_accuracy_drop", 1.0, "Largest dev drop (points) an int8 model may have to ship.")
flags.DEFINE_string("eval_file", None, "Labeled file for parity and the gate (default: the task's dev.tsv).")
flags.DEFINE_string("pred_file", None, "Requests, one per line, in the transfer-file format; - for stdin.")
flags.DEFINE_string("output_file", None, "Predictions (default: <model_dir>/onnx/predictions.txt).")
flags.DEFINE_enum("serve_model", "int8", ["int8", "fp32"], "Which ONNX model serves the requests.")
flags.DEFINE_integer("intra_op_threads", 1, "onnxruntime intra-op threads per session.")
flags.DEFINE_integer("instances", 1, "Also measure N single-thread sessions in parallel processes.")
flags.DEFINE_integer("warmup", 10, "Untimed warm-up requests.")
flags.DEFINE_bool("compare", False, "Also time TF fp32 and the other ONNX model, interleaved, in the same run.")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    from xdistil.export.student_export import ExportOptions
    from xdistil.inference.onnx_serving import ServeOptions, run_onnx_prediction

    if FLAGS.opset < 17:
        raise app.UsageError("--opset must be 17 or later")
    export = ExportOptions(
        opset=FLAGS.opset, int64_inputs=FLAGS.int64_inputs, quantization=FLAGS.quantization,
        per_channel=FLAGS.per_channel, reduce_range=FLAGS.reduce_range, calibration_file=FLAGS.calibration_file,
        calibration_size=FLAGS.calibration_size, max_accuracy_drop=FLAGS.max_accuracy_drop,
        eval_file=FLAGS.eval_file) if FLAGS.do_export else None
    serve = ServeOptions(pred_file=FLAGS.pred_file, output_file=FLAGS.output_file, serve_model=FLAGS.serve_model,
                         intra_op_threads=FLAGS.intra_op_threads, instances=FLAGS.instances, warmup=FLAGS.warmup,
                         compare=FLAGS.compare)
    try:
        run_onnx_prediction(FLAGS.model_dir, export, serve)
    except (InputFormatError, OSError) as error:  # bad input, missing file
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main)
