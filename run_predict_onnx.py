"""Export a distilled student to fused int8 ONNX and serve it one request at a time on CPU:

    python run_predict_onnx.py --model_dir out/ner --do_export --pred_file DATA/test_sentences.txt --compare
    python run_predict_onnx.py --model_dir out/ner --serve --port 8080 --workers 2     # HTTP service
"""
import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import flags, logging

from xdistil import cli
from xdistil.errors import ConfigError, ModelDirectoryError
from xdistil.export.student_export import ExportOptions
from xdistil.inference.onnx_serving import ServeOptions
from xdistil.serving.options import ServiceOptions
from xdistil.serving.server import bind_listener, run_service

flags.DEFINE_string("model_dir", None, "Model directory written by run_xtreme_distil.py or run_finetune.py.")
flags.DEFINE_bool("do_export", False, "Export, fuse, quantize and check again (done anyway when onnx/ has no "
                                      "export of the current student).")
cli.define_flags(ExportOptions)
cli.define_flags(ServeOptions)
flags.DEFINE_bool("serve", False, "Serve the model over HTTP (POST /predict, /health, /metadata, /metrics, a page at "
                                  "/) until SIGTERM, instead of answering --pred_file.")
cli.define_flags(ServiceOptions)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    export_options, serve_options = cli.section_from_flags(ExportOptions), cli.section_from_flags(ServeOptions)
    service_options = cli.section_from_flags(ServiceOptions)
    from xdistil.export.student_export import export_student
    from xdistil.inference.onnx_serving import limit_tf_threads, run_onnx_prediction
    from xdistil.model_dir import ModelDirectory

    if flags.FLAGS.serve:
        for flag, given in (("pred_file", serve_options.pred_file), ("compare", serve_options.compare),
                            ("instances", serve_options.instances > 1)):
            if given:
                raise ConfigError(flag, f"--{flag} belongs to the file loop and --serve to HTTP requests: give one")
    model_dir = ModelDirectory.load(cli.required(flags.FLAGS, "model_dir"))
    listener = bind_listener(service_options) if flags.FLAGS.serve else None  # a port in use stops here, not later
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
    if listener is not None:
        run_service(listener, model_dir, report, serve_options, service_options)
    elif serve_options.pred_file:
        run_onnx_prediction(model_dir, report, serve_options)


if __name__ == "__main__":
    cli.main(main)
