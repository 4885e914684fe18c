"""Convert a checkpoint to HF layout (config.json, model.safetensors, vocab.txt).

    bertkit convert uncased_L-2_H-128_A-2/bert_model.ckpt bert-tiny-hf/
    bertkit convert old_model_dir/pytorch_model.bin new_model_dir/

The output loads in bertkit and in transformers. The head (pre-training, classifier, SQuAD) is
read off the checkpoint's variable names by the task registry; optimizer slots are left out and listed.
"""

from __future__ import annotations

from bertkit.checkpoint.convert import convert_checkpoint, mapped_names
from bertkit.cli.main import show_load_report
from bertkit.io_utils import check_output_dir
from bertkit.tasks import registry


def add_arguments(parser) -> None:
    parser.add_argument("source", help="Google checkpoint prefix or directory, or an HF directory / .bin file")
    parser.add_argument("destination", help="output directory (created if needed)")


def run(args) -> int:
    check_output_dir(args.destination, "destination")
    names = mapped_names(args.source)
    model_class, overrides = registry.for_weights(names, names)
    model = convert_checkpoint(args.source, args.destination, model_class, **overrides)
    show_load_report(model)
    print(f"\nwrote {type(model).__name__} ({model.num_parameters():,} parameters) to {args.destination}")
    return 0
