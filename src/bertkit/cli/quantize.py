"""Quantize a checkpoint's encoder to int8 (dynamic, per-channel weights) and save it.

    bertkit quantize --model outputs/mrpc --output_dir outputs/mrpc-int8
    bertkit quantize --output_dir minilm-int8          # the packaged all-MiniLM-L6-v2

The output loads with from_pretrained / --model like any checkpoint (its config.json carries
`quantization_config`); files beside the weights (vocab, tokenizer and pooling configs) are copied.
"""

from __future__ import annotations

from bertkit.cli.common import ModelSource, add_model_arguments
from bertkit.int8 import PROJECTIONS, quantization_config, quantize
from bertkit.export.files import load_for_export, save_with_companions
from bertkit.io_utils import check_output_dir


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--keep_fp32", default="",
                        help=f"comma-separated projections of every layer to leave in fp32: {', '.join(PROJECTIONS)}")
    parser.add_argument("--per_tensor", action="store_true", help="one weight scale per matrix instead of per row")


def run(args) -> int:
    keep = [name for name in args.keep_fp32.split(",") if name]
    quantization_config(not args.per_tensor, keep)  # a wrong name fails here, before any loading
    check_output_dir(args.output_dir)
    source = ModelSource.from_args(args).checkpoint
    model = load_for_export(source)
    quantize(model, per_channel=not args.per_tensor, keep_fp32=keep)
    save_with_companions(model, source, args.output_dir)
    print(f"wrote int8 {type(model).__name__} to {args.output_dir} "
          f"(fp32 projections: {', '.join(keep) or 'none'})")
    return 0
