"""The serving process that run_predict_onnx.py --serve becomes (exec):

    python -m xdistil.serving --fd N --settings JSON

`--fd` is the bound listening socket it inherits, `--settings` a ServiceSettings as JSON. It never imports
TensorFlow, so each worker holds only its tokenizer and ONNX session.
"""
import argparse
import socket
import sys

from xdistil.cli import report_error
from xdistil.errors import XdistilError
from xdistil.serving.options import ServiceSettings
from xdistil.serving.server import serve_on_socket


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xdistil.serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fd", type=int, required=True, help="file descriptor of the bound listening socket")
    parser.add_argument("--settings", required=True, help="ServiceSettings as JSON")
    args = parser.parse_args(argv)
    try:
        return serve_on_socket(socket.socket(fileno=args.fd), ServiceSettings.from_json(args.settings))
    except (XdistilError, OSError) as error:
        print(report_error(error), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
