"""Export a distilled student to fused int8 ONNX and serve it one request at a time on CPU:

    python run_predict_onnx.py --model_dir out/ner --do_export --pred_file DATA/test_sentences.txt --compare
"""
import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import flags, logging

from xdistil import cli
from xdistil.errors import ModelDirectoryError
from xdistil.export.student_export import ExportOptions
from xdistil.inference.onnx_serving import ServeOptions

flags.DEFINE_string("model_dir", None, "Model directory written by run_xtreme_distil.py or run_finetune.py.")
flags.DEFINE_bool("do_export", False, "Export, fuse, quantize and check again (done anyway when onnx/ has no "
                                      "export of the current student).")
cli.define_flags(ExportOptions)
cli.define_flags(ServeOptions)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    export_options, serve_options = cli.section_from_flags(ExportOptions), cli.section_from_flags(ServeOptions)
    from xdistil.export.student_export import export_student
    from xdistil.inference.onnx_serving import limit_tf_threads, run_onnx_prediction
    from xdistil.model_dir import ModelDirectory

    model_dir = ModelDirectory.load(cli.required(flags.FLAGS, "model_dir"))
    if serve_options.compare:  # before the export starts TensorFlow, or the setting cannot be made
        limit_tf_threads(serve_options.intra_op_threads)
    if flags.FLAGS.do_export:
        report = export_student(model_dir, export_options)
    else:
        try:
            report = model_dir.checked_export()
        except ModelDirectoryError as why:
            logging.warning("%s (%s): exporting now", why.what, why.where)
            report = export_student(model_dir, export_options)
    if serve_options.pred_file:
        run_onnx_prediction(model_dir, report, serve_options)


if __name__ == "__main__":
    cli.main(main)
