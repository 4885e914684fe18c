"""List every variable of a checkpoint (HF or Google TF) with its shape, dtype and what it maps to.

    bertkit inspect uncased_L-2_H-128_A-2/bert_model.ckpt
    bertkit inspect path/to/hf_dir --json
"""

from __future__ import annotations

import json

from bertkit.checkpoint.inspect import format_inspection, inspect_checkpoint, inspection_as_dict


def add_arguments(parser) -> None:
    parser.add_argument("path", help="checkpoint directory, weights file, or Google checkpoint prefix")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    files, rows = inspect_checkpoint(args.path)
    if args.json:
        print(json.dumps(inspection_as_dict(files, rows), indent=2))
    else:
        print(format_inspection(files, rows))
    return 0
