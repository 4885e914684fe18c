"""Prune a fine-tuned GLUE classifier: attention heads and FFN neurons removed, or weights zeroed.

    bertkit prune --model=/tmp/mrpc_output --task_name=MRPC --data_dir=$GLUE_DIR/MRPC \\
        --heads=0.5 --neurons=0.5 --do_eval=true --output_dir=/tmp/mrpc_pruned

--heads / --neurons: the fraction of all heads / FFN neurons to remove (each layer keeps at least
one). --method=importance (default; Michel et al. 2019) scores them by |d loss / d gate| on
--importance_examples training examples; --method=magnitude needs no data. --sparsity zeroes that
fraction of the encoder's dense weights by magnitude (unstructured; shapes unchanged) and prints a
sparsity report. --layers keeps only those encoder layers (every_other, 0,2,4, uniform:N, ...),
as LayerDrop's inference-time pruning does; --depth_report evaluates the dev set at every depth
first. With --do_eval the dev set is evaluated before and after. The pruned model, loadable with
from_pretrained, and prune_report.json go to --output_dir.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from torch.utils.data import DataLoader

from bertkit.cli.common import (ModelSource, add_max_seq_length_argument, default_cache_dir, load_tokenizer,
                                max_seq_length_for)
from bertkit.cli.main import positive_int, str2bool
from bertkit.compress.layerdrop import evaluate_depths, format_depth_table, prune_layers
from bertkit.compress.prune import (importance_scores, magnitude_prune, magnitude_scores, prune_structured,
                                    sparsity_report)
from bertkit.data.batching import PaddingCollator
from bertkit.data.glue import get_processor
from bertkit.errors import ConfigError
from bertkit.heads import BertForSequenceClassification
from bertkit.io_utils import atomic_write, check_output_dir
from bertkit.tasks.classifier import ClassifierTask, build_dataset, glue_metrics_fn
from bertkit.training.trainer import Trainer, TrainingArguments

logger = logging.getLogger("bertkit")


def add_arguments(parser) -> None:
    parser.add_argument("--model", "--init_checkpoint", dest="model", required=True,
                        help="the fine-tuned classifier: an HF directory or a Google checkpoint")
    parser.add_argument("--output_dir", required=True, help="where the pruned model and prune_report.json go")
    parser.add_argument("--task_name", help="GLUE task of the data (needed for importance scores and --do_eval)")
    parser.add_argument("--data_dir", help="the task's GLUE folder")
    parser.add_argument("--heads", type=float, default=0.0, help="fraction of attention heads to remove (e.g. 0.5)")
    parser.add_argument("--neurons", type=float, default=0.0, help="fraction of FFN neurons to remove (e.g. 0.5)")
    parser.add_argument("--method", choices=("importance", "magnitude"), default="importance")
    parser.add_argument("--scope", choices=("global", "layer"), default="global",
                        help="rank units over all layers (default) or remove the fraction from every layer")
    parser.add_argument("--sparsity", type=float, default=0.0,
                        help="unstructured: zero this fraction of the encoder's dense weights by magnitude")
    parser.add_argument("--layers", default=None,
                        help="keep only these encoder layers: every_other, 0,2,4, bottom:N, top:N or uniform:N "
                             "(for a model trained with --layerdrop)")
    parser.add_argument("--depth_report", type=str2bool, nargs="?", const=True, default=False, metavar="BOOL",
                        help="evaluate the dev set with the encoder cut to every depth (needs --task_name, "
                             "--data_dir); printed as a table and saved in prune_report.json")
    parser.add_argument("--importance_examples", type=int, default=512,
                        help="training examples used for importance scores (default 512)")
    parser.add_argument("--batch_size", type=positive_int, default=32)
    add_max_seq_length_argument(parser)
    parser.add_argument("--do_eval", type=str2bool, nargs="?", const=True, default=False, metavar="BOOL",
                        help="evaluate on the dev set before and after pruning")
    parser.add_argument("--vocab_file", help="vocab.txt (default: the one beside the model)")
    parser.add_argument("--do_lower_case", type=str2bool, default=None, metavar="BOOL")
    parser.add_argument("--cache_dir", default=default_cache_dir(), help="feature cache directory ('none' disables it)")


def _evaluate(model, dataset, task_name: str, is_regression: bool, output_dir: str, batch_size: int,
              prefix: str) -> dict:
    args = TrainingArguments(output_dir=output_dir, eval_batch_size=batch_size, progress=False, tensorboard=False,
                             plot=False)
    trainer = Trainer(model, args, compute_metrics=glue_metrics_fn(task_name, is_regression))
    start = time.perf_counter()
    results = trainer.evaluate(dataset, prefix=prefix)
    results[f"{prefix}_seconds"] = time.perf_counter() - start
    return results


def run(args) -> int:
    if not (args.heads or args.neurons or args.sparsity or args.layers or args.depth_report):
        raise ConfigError("nothing to prune: give --heads, --neurons, --sparsity and/or --layers")
    needs_data = args.do_eval or args.depth_report or ((args.heads or args.neurons) and args.method == "importance")
    if needs_data and not (args.task_name and args.data_dir):
        raise ConfigError("--task_name and --data_dir are needed for importance scores, --do_eval and "
                          "--depth_report (or use --method=magnitude without them)")
    check_output_dir(args.output_dir)
    processor = get_processor(args.task_name) if args.task_name else None
    model = BertForSequenceClassification.from_pretrained(args.model)
    max_seq_length = max_seq_length_for(args, model.config)
    tokenizer = load_tokenizer(ModelSource.of(args.model, vocab_file=args.vocab_file, do_lower_case=args.do_lower_case),
                               model.config)
    vocab_file = str(tokenizer.vocab_file)
    cache_dir = None if args.cache_dir.lower() == "none" else args.cache_dir
    report: dict = {"model": str(args.model), "parameters_before": model.num_parameters()}
    dev = None
    if args.do_eval or args.depth_report:
        task = ClassifierTask(args.task_name, args.data_dir, max_seq_length, do_eval=True, cache_dir=cache_dir)
        _, dev = build_dataset(processor, task, "dev", tokenizer, vocab_file, False)
    if args.do_eval:
        report["before"] = _evaluate(model, dev, args.task_name, processor.is_regression, args.output_dir,
                                     args.batch_size, "unpruned")
    if args.depth_report:
        rows = evaluate_depths(model, lambda cut: _evaluate(cut, dev, args.task_name, processor.is_regression,
                                                            args.output_dir, args.batch_size, "eval"))
        report["depths"] = rows
        print(format_depth_table([{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in rows]))
    if args.layers:
        model = prune_layers(model, args.layers)
        report["kept_layers"] = model.config.kept_layers
    if args.heads or args.neurons:
        if args.method == "importance":
            task = ClassifierTask(args.task_name, args.data_dir, max_seq_length, do_train=True, cache_dir=cache_dir,
                                  max_train_examples=args.importance_examples)
            _, train = build_dataset(processor, task, "train", tokenizer, vocab_file, False)
            loader = DataLoader(train, batch_size=args.batch_size, collate_fn=PaddingCollator())
            scores = importance_scores(model, loader)
        else:
            scores = magnitude_scores(model)
        report["structured"] = prune_structured(model, heads=args.heads, neurons=args.neurons, scores=scores,
                                                scope=args.scope)
    if args.sparsity:
        magnitude_prune(model, args.sparsity)
        sparsity = sparsity_report(model)
        print(sparsity)
        report["sparsity"] = sparsity.to_dict()
    if args.do_eval:
        report["after"] = _evaluate(model, dev, args.task_name, processor.is_regression, args.output_dir,
                                    args.batch_size, "eval")
    report["parameters_after"] = model.num_parameters()
    model.save_pretrained(args.output_dir, tokenizer=tokenizer)
    with atomic_write(Path(args.output_dir) / "prune_report.json") as handle:
        json.dump(report, handle, indent=2, default=str)
    print(f"parameters: {report['parameters_before']:,} -> {report['parameters_after']:,}")
    if "kept_layers" in report:
        print(f"kept layers: {report['kept_layers']}")
    if "structured" in report:
        s = report["structured"]
        print(f"heads per layer: {s['layer_num_heads']}")
        print(f"FFN size per layer: {s['layer_intermediate_sizes']}")
    for when in ("before", "after"):
        if when in report:
            shown = ", ".join(f"{k} = {v:.4f}" for k, v in sorted(report[when].items()) if isinstance(v, float))
            print(f"{when}: {shown}")
    print(f"pruned model saved to {args.output_dir}")
    return 0
