"""Export a checkpoint (any head) to ONNX, with dynamic batch and sequence axes.

    bertkit export --model outputs/mrpc --output mrpc.onnx
    bertkit export --output minilm-int8.onnx --int8     # the packaged all-MiniLM-L6-v2, int8 MatMuls

Inputs: input_ids, attention_mask, token_type_ids (int64); outputs are named by head (logits,
start_logits/end_logits, last_hidden_state/pooler_output, ...). Needs `pip install 'bertkit[onnx]'`.
"""

from __future__ import annotations

from bertkit.cli.common import ModelSource, add_model_arguments
from bertkit.cli.main import str2bool
from bertkit.errors import ConfigError
from bertkit.export.files import load_for_export
from bertkit.io_utils import check_output_file


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--int8", action="store_true", help="quantize MatMul weights to int8 (ONNX Runtime, per channel)")
    parser.add_argument("--unpad", type=str2bool, nargs="?", const=True, default=None, metavar="BOOL",
                        help="trace the padding-free encoder path (default: the padded one, faster under ONNX Runtime)")


def run(args) -> int:
    from bertkit.export.onnx import export_onnx

    if not args.output.endswith(".onnx"):
        raise ConfigError(f"--output={args.output!r}: give a file name ending in .onnx")
    check_output_file(args.output, flag="--output")
    model = load_for_export(ModelSource.from_args(args).checkpoint)
    path = export_onnx(model, args.output, int8=args.int8, unpad=bool(args.unpad))
    print(f"wrote {type(model).__name__} to {path} ({'int8' if args.int8 else 'fp32'})")
    return 0
