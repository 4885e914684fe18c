"""Write the small real TensorFlow checkpoints under tests/fixtures/tf/ (run by hand, never in CI).

The tests of bertkit.checkpoint.tf_bundle must read checkpoints that TensorFlow itself wrote, not
ones written by our own understanding of the format, so this script needs a real TensorFlow. It
installs nothing; run it from a throwaway virtual environment:

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
    /tmp/tfvenv/bin/python tools/make_tf_fixtures.py [--out tests/fixtures/tf]

Every checkpoint is written in graph mode by tf.compat.v1.train.Saver (tensor bundle V2), the
way Google's BERT release and run_pretraining.py / run_classifier.py wrote theirs, with Google's
variable names. Beside each checkpoint, expected/<name with "/" replaced by "__">.npy holds the
value TensorFlow read back for every variable (bfloat16 as its exact float32 widening, because
.npy has no bfloat16), and variables.json holds tf.train.list_variables and the dtypes. The output
is deterministic apart from TensorFlow's own byte layout, so rerunning it changes nothing unless
TensorFlow changed.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1

HIDDEN = 32
LAYERS = 2
HEADS = 2
INTERMEDIATE = 64
MAX_POSITIONS = 64
TYPE_VOCAB = 2
NUM_LABELS = 2
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an of and to in is was he she it they we you i that this with for on as at by from "
    "be have has had not but or are were his her their its my our your me him them us what which "
    "who when where why how all any some no one two three four five six seven eight nine ten "
    "cat dog house car tree book water fire day night good bad new old big small red blue green "
    "run walk talk sit eat sleep read write play"
).split()


def vocab() -> list[str]:
    """A 99-token vocabulary in Google's vocab.txt order: special tokens first."""
    tokens = SPECIAL_TOKENS + WORDS
    assert len(tokens) == 99 and len(set(tokens)) == 99, len(tokens)
    return tokens


def bert_config() -> dict:
    """Google's bert_config.json keys for the tiny encoder."""
    return {
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": MAX_POSITIONS,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "type_vocab_size": TYPE_VOCAB,
        "vocab_size": len(vocab()),
    }


def encoder_shapes() -> dict[str, tuple[int, ...]]:
    """Google's names and shapes of the BERT encoder and pooler; kernels are [in, out]."""
    shapes = {
        "bert/embeddings/word_embeddings": (len(vocab()), HIDDEN),
        "bert/embeddings/token_type_embeddings": (TYPE_VOCAB, HIDDEN),
        "bert/embeddings/position_embeddings": (MAX_POSITIONS, HIDDEN),
        "bert/embeddings/LayerNorm/gamma": (HIDDEN,),
        "bert/embeddings/LayerNorm/beta": (HIDDEN,),
    }
    for i in range(LAYERS):
        layer = f"bert/encoder/layer_{i}"
        for proj in ("query", "key", "value"):
            shapes[f"{layer}/attention/self/{proj}/kernel"] = (HIDDEN, HIDDEN)
            shapes[f"{layer}/attention/self/{proj}/bias"] = (HIDDEN,)
        shapes[f"{layer}/attention/output/dense/kernel"] = (HIDDEN, HIDDEN)
        shapes[f"{layer}/attention/output/dense/bias"] = (HIDDEN,)
        shapes[f"{layer}/attention/output/LayerNorm/gamma"] = (HIDDEN,)
        shapes[f"{layer}/attention/output/LayerNorm/beta"] = (HIDDEN,)
        shapes[f"{layer}/intermediate/dense/kernel"] = (HIDDEN, INTERMEDIATE)
        shapes[f"{layer}/intermediate/dense/bias"] = (INTERMEDIATE,)
        shapes[f"{layer}/output/dense/kernel"] = (INTERMEDIATE, HIDDEN)
        shapes[f"{layer}/output/dense/bias"] = (HIDDEN,)
        shapes[f"{layer}/output/LayerNorm/gamma"] = (HIDDEN,)
        shapes[f"{layer}/output/LayerNorm/beta"] = (HIDDEN,)
    shapes["bert/pooler/dense/kernel"] = (HIDDEN, HIDDEN)
    shapes["bert/pooler/dense/bias"] = (HIDDEN,)
    return shapes


def pretraining_head_shapes() -> dict[str, tuple[int, ...]]:
    """run_pretraining.py's masked-LM and next-sentence heads."""
    return {
        "cls/predictions/transform/dense/kernel": (HIDDEN, HIDDEN),
        "cls/predictions/transform/dense/bias": (HIDDEN,),
        "cls/predictions/transform/LayerNorm/gamma": (HIDDEN,),
        "cls/predictions/transform/LayerNorm/beta": (HIDDEN,),
        "cls/predictions/output_bias": (len(vocab()),),
        "cls/seq_relationship/output_weights": (2, HIDDEN),
        "cls/seq_relationship/output_bias": (2,),
    }


def classifier_head_shapes() -> dict[str, tuple[int, ...]]:
    """run_classifier.py's head: output_weights is [num_labels, hidden], not [in, out]."""
    return {"output_weights": (NUM_LABELS, HIDDEN), "output_bias": (NUM_LABELS,)}


def random_values(shapes: dict[str, tuple[int, ...]], seed: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """Values like a trained model's: LayerNorm gammas near 1, everything else small and random."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        value = rng.normal(0.0, 0.02, size=shape)
        if name.endswith("/gamma"):
            value += 1.0
        values[name] = value.astype(dtype)
    return values


def save(out_dir: Path, file_prefix: str, variables: dict, *, write_state: bool = False,
         sharded: bool = False, devices: dict[str, str] | None = None) -> None:
    """Create the variables in a fresh graph, save them with Saver (V2), record what TF reads back.

    `variables` maps a name to a numpy value, or to (value, tf dtype) where numpy cannot express
    the dtype (bfloat16, string), or to a value plus a partitioner (see `misc`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        created = []
        for name, spec in variables.items():
            value, dtype, partitioner = spec if isinstance(spec, tuple) else (spec, None, None)
            with tf.device((devices or {}).get(name, "/cpu:0")):
                created.append(tf1.get_variable(
                    name, initializer=tf.constant(value, dtype=dtype), partitioner=partitioner,
                    use_resource=False))
        saver = tf1.train.Saver(sharded=sharded, save_relative_paths=True)
        config = tf1.ConfigProto(device_count={"CPU": 2})
        with tf1.Session(graph=graph, config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            prefix = str(out_dir / file_prefix)
            saver.save(sess, prefix, write_meta_graph=False, write_state=write_state)
    write_expected(out_dir, prefix)


def write_expected(out_dir: Path, prefix: str) -> None:
    """What TensorFlow's own reader returns: variables.json and expected/*.npy."""
    reader = tf1.train.NewCheckpointReader(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    listing = [[name, list(shape), dtypes[name].name] for name, shape in tf.train.list_variables(prefix)]
    (out_dir / "variables.json").write_text(json.dumps(
        {"tensorflow": tf.__version__, "prefix": Path(prefix).name, "variables": listing}, indent=1) + "\n")
    expected = out_dir / "expected"
    expected.mkdir(exist_ok=True)
    for name, _, dtype in listing:
        if dtype == "string":
            continue  # bertkit does not decode string tensors; variables.json still lists them
        value = reader.get_tensor(name)
        if dtype == "bfloat16":
            value = value.astype(np.float32)  # exact: every bfloat16 is a float32
        np.save(expected / (name.replace("/", "__") + ".npy"), np.asarray(value), allow_pickle=False)


def write_model_files(out_dir: Path) -> None:
    """bert_config.json and vocab.txt, as in Google's release zips."""
    (out_dir / "bert_config.json").write_text(json.dumps(bert_config(), indent=2, sort_keys=True) + "\n")
    (out_dir / "vocab.txt").write_text("\n".join(vocab()) + "\n")


def misc(out: Path) -> None:
    """Every dtype, special float values, an empty and a scalar tensor, strings, a partitioned
    variable, and two checkpoints in one directory with a `checkpoint` state file naming the later."""
    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4028235e38, 1.0, -2.5],
                       dtype=np.float32)
    for step in (1, 2):
        variables = {
            "misc/float32_special": np.roll(special, step),
            "misc/float64": rng.normal(size=(3, 2)),
            "misc/float16": rng.normal(size=(4, 3)).astype(np.float16),
            "misc/bfloat16": (rng.normal(size=(5, 2)).astype(np.float32), tf.bfloat16, None),
            "misc/int8": rng.integers(-128, 128, size=(6,)).astype(np.int8),
            "misc/int16": rng.integers(-2**15, 2**15, size=(6,)).astype(np.int16),
            "misc/uint8": rng.integers(0, 256, size=(2, 3)).astype(np.uint8),
            "misc/int32": rng.integers(-2**31, 2**31, size=(2, 2, 2)).astype(np.int32),
            "misc/int64": np.array([0, -1, 2**62, -2**63, 2**63 - 1], dtype=np.int64),
            "misc/bool": np.array([True, False, False, True]),
            "misc/scalar": np.float32(0.125 * step),
            "misc/empty": np.zeros((0, 4), dtype=np.float32),
            "misc/string": (np.array([b"hello", "h\u00e9llo w\u00f6rld".encode(), b""], dtype=object),
                            tf.string, None),
            "misc/string_scalar": (b"bert", tf.string, None),
            "misc/partitioned": (rng.normal(size=(6, 4)).astype(np.float32), None,
                                 tf1.fixed_size_partitioner(2)),
            "global_step": np.int64(step),
        }
        save(out / "misc", f"model.ckpt-{step}", variables, write_state=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/tf")
    args = parser.parse_args()
    tf1.disable_eager_execution()
    out: Path = args.out
    for child in out.glob("*"):
        if child.is_dir():
            shutil.rmtree(child)

    encoder = random_values(encoder_shapes(), seed=1)

    pretraining = out / "bert_tiny_pretraining"
    save(pretraining, "bert_model.ckpt", {**encoder, **random_values(pretraining_head_shapes(), seed=2)})
    write_model_files(pretraining)

    classifier = out / "bert_tiny_classifier"
    save(classifier, "bert_model.ckpt", {**encoder, **random_values(classifier_head_shapes(), seed=3)})
    write_model_files(classifier)

    # run_pretraining.py output: AdamWeightDecayOptimizer slots and an int64 global_step, saved as
    # model.ckpt-<step> with a `checkpoint` state file.
    adam = out / "bert_tiny_adam"
    model = {**encoder, **random_values(pretraining_head_shapes(), seed=2)}
    slots = {}
    for name, value in model.items():
        rng = np.random.default_rng(len(slots))
        slots[f"{name}/adam_m"] = rng.normal(0.0, 1e-3, size=value.shape).astype(np.float32)
        slots[f"{name}/adam_v"] = np.abs(rng.normal(0.0, 1e-6, size=value.shape)).astype(np.float32)
    save(adam, "model.ckpt-20", {**model, **slots, "global_step": np.int64(20)}, write_state=True)
    write_model_files(adam)

    # Variables on two devices: Saver(sharded=True) writes one data file per device.
    sharded = out / "bert_tiny_sharded"
    devices = {name: ("/cpu:1" if "layer_1" in name or name.startswith("bert/pooler") else "/cpu:0")
               for name in encoder}
    save(sharded, "bert_model.ckpt", encoder, sharded=True, devices=devices)
    write_model_files(sharded)

    fp16 = out / "bert_tiny_fp16"
    save(fp16, "bert_model.ckpt", random_values(encoder_shapes(), seed=1, dtype=np.float16))
    write_model_files(fp16)

    misc(out)
    (out / "README.md").write_text(
        "# TensorFlow checkpoint fixtures\n\n"
        f"Written by `tools/make_tf_fixtures.py` with TensorFlow {tf.__version__} "
        "(`tf.compat.v1.train.Saver`, tensor bundle V2), NumPy " + np.__version__ + ".\n"
        "Do not edit by hand; rerun the script (see its docstring) to regenerate.\n\n"
        "Each directory holds a checkpoint, `variables.json` (TensorFlow's own `list_variables` and\n"
        "dtypes) and `expected/<name with / as __>.npy` (the values TensorFlow reads back; bfloat16\n"
        "widened to float32, string tensors left out).\n\n"
        "| directory | contents |\n| --- | --- |\n"
        "| bert_tiny_pretraining | 2 layers, H=32, vocab 99, with the `cls/*` pre-training heads |\n"
        "| bert_tiny_classifier | same encoder, run_classifier head (`output_weights` [2, 32]) |\n"
        "| bert_tiny_adam | encoder + heads + `adam_m`/`adam_v` slots + int64 `global_step`, "
        "`model.ckpt-20` with a `checkpoint` file |\n"
        "| bert_tiny_sharded | encoder in two data shards (`Saver(sharded=True)`, two devices) |\n"
        "| bert_tiny_fp16 | encoder in float16 |\n"
        "| misc | every dtype, NaN/inf/-0/subnormals, empty and scalar tensors, strings, a partitioned "
        "variable; `model.ckpt-1` and `model.ckpt-2` with a `checkpoint` file naming the second "
        "(expected values are those of `model.ckpt-2`) |\n")


if __name__ == "__main__":
    main()
