"""Export a checkpoint (any head) to ONNX, with dynamic batch and sequence axes.

    bertkit export --model outputs/mrpc                       # writes outputs/mrpc/model.onnx
    bertkit export --model outputs/mrpc --output_dir outputs/mrpc-onnx --int8
    bertkit export --output_dir minilm-onnx                   # the packaged all-MiniLM-L6-v2
    bertkit export --model outputs/mrpc --output_file mrpc.onnx   # the .onnx file alone

A directory written by export (or a checkpoint directory with its model.onnx) is a model for
`bertkit predict --backend onnx`, `bertkit serve --backend onnx` and `pipeline(dir, backend="onnx")`,
which run the saved graph instead of exporting on every start: with --output_dir, beside model.onnx
go config.json and the tokenizer and pooling files, not the torch weights.
Inputs: input_ids, attention_mask, token_type_ids (int64); outputs are named by head (logits,
start_logits/end_logits, last_hidden_state/pooler_output, ...). Needs `pip install 'bertkit[onnx]'`.
"""

from __future__ import annotations

from pathlib import Path

from bertkit.checkpoint.load import resolve_checkpoint
from bertkit.cli.common import ModelSource, add_model_arguments
from bertkit.cli.main import str2bool
from bertkit.errors import ConfigError
from bertkit.export.files import load_for_export
from bertkit.io_utils import check_output_dir, check_output_file


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--output_dir", default=None,
                        help="write DIR/model.onnx with the config and tokenizer files beside it "
                             "(default: the --model directory itself)")
    output.add_argument("--output_file", "--output", dest="output_file", default=None,
                        help="write only this .onnx file")
    parser.add_argument("--int8", action="store_true", help="quantize MatMul weights to int8 (ONNX Runtime, per channel)")
    parser.add_argument("--unpad", type=str2bool, nargs="?", const=True, default=None, metavar="BOOL",
                        help="trace the padding-free encoder path (default: the padded one, faster under ONNX Runtime)")


def run(args) -> int:
    from bertkit.export.onnx import export_directory, export_onnx

    if args.output_file is not None:
        if not args.output_file.endswith(".onnx"):
            raise ConfigError(f"--output_file={args.output_file!r}: give a file name ending in .onnx")
        check_output_file(args.output_file)
    elif args.output_dir is None and args.init_checkpoint is None:
        raise ConfigError("give --output_dir (or --output_file): the packaged model's own folder is not the place "
                          "for an export")
    source = ModelSource.from_args(args).checkpoint
    directory = resolve_checkpoint(source).directory
    if args.output_file is None:
        check_output_dir(args.output_dir or directory, flag="--output_dir" if args.output_dir else "--model")
    model = load_for_export(source)
    if args.output_file is not None:
        path = export_onnx(model, args.output_file, int8=args.int8, unpad=bool(args.unpad))
    else:
        path = export_directory(model, directory, Path(args.output_dir or directory), int8=args.int8,
                                unpad=bool(args.unpad))
    print(f"wrote {type(model).__name__} to {path} ({'int8' if args.int8 else 'fp32'})")
    return 0
