"""Students cut from a teacher, and LayerDrop: training with it and cutting layers at inference."""

import pytest
import torch

from bertkit.compress.layerdrop import evaluate_depths, format_depth_table, prune_layers, set_layerdrop
from bertkit.compress.prune import prune_heads
from bertkit.compress.student import keep_layers, resolve_layers, student_from_teacher, uniform_layers
from bertkit.errors import ConfigError
from bertkit.heads import BertForSequenceClassification, BertForTokenClassification
from bertkit.heads import BertModel
from helpers import random_batch, tiny_config


def _teacher(layers=5, cls=BertForSequenceClassification, **kw):
    torch.manual_seed(0)
    return cls(tiny_config(num_hidden_layers=layers, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                           **kw)).eval()


def test_student_holds_the_teachers_tensors():
    teacher = _teacher()
    student = student_from_teacher(teacher, [0, 2, 4])
    t, s = teacher.state_dict(), student.state_dict()
    assert len(student.bert.encoder.layer) == 3 and student.config.num_hidden_layers == 3
    for name, tensor in s.items():
        source = name
        for new, old in enumerate([0, 2, 4]):
            source = source.replace(f"encoder.layer.{new}.", f"encoder.layer.#{old}.")
        assert torch.equal(tensor, t[source.replace("#", "")]), name
    assert student.config.kept_layers == [0, 2, 4]
    assert any("teacher layers [0, 2, 4] of 5" in note for note in student.load_report.notes)
    assert "classifier" in student.load_report.notes[0] and "pooler" in student.load_report.notes[0]
    assert sorted(student.load_report.loaded) == sorted(s)
    # the teacher is untouched, and the two share no storage
    assert len(teacher.bert.encoder.layer) == 5 and teacher.config.kept_layers is None
    with torch.no_grad():
        student.classifier.weight.add_(1.0)
    assert not torch.equal(student.classifier.weight, teacher.classifier.weight)


def test_student_outputs_equal_the_teacher_run_on_those_layers(tmp_path):
    teacher = _teacher(cls=BertForTokenClassification)  # no pooler
    student = student_from_teacher(teacher, "every_other")
    assert student.config.kept_layers == [0, 2, 4]
    batch = random_batch(teacher.config)
    with torch.no_grad():
        hidden = teacher.bert.embeddings(batch["input_ids"], batch["token_type_ids"])
        mask = (1.0 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
        for i in (0, 2, 4):
            hidden, _ = teacher.bert.encoder.layer[i](hidden, mask)
        expected = teacher.classifier(hidden)
        got = student(**batch).logits
    real = batch["attention_mask"].bool()
    assert (got - expected)[real].abs().max() < 1e-5
    student.save_pretrained(tmp_path)
    again = BertForTokenClassification.from_pretrained(tmp_path).eval()
    assert again.config.kept_layers == [0, 2, 4]
    with torch.no_grad():
        assert torch.equal(again(**batch).logits, got)


@pytest.mark.parametrize("spec, expected", [
    ("every_other", [0, 2, 4, 6, 8, 10]), ("0,5, 11", [0, 5, 11]), ([1, 3], [1, 3]),
    ("bottom:3", [0, 1, 2]), ("top:2", [10, 11]), ("uniform:6", [1, 3, 5, 7, 9, 11]), ("uniform:12", list(range(12))),
])
def test_layer_specs(spec, expected):
    assert resolve_layers(spec, 12) == expected


@pytest.mark.parametrize("spec, message", [("0,12", "do not exist"), ("2,1", "increasing"), ("all", "not understood"),
                                           ([], "keeps no layer"), ("uniform:0", "between 1 and 12")])
def test_bad_layer_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        resolve_layers(spec, 12)


def test_cutting_a_pruned_model_keeps_its_records(tmp_path):
    teacher = _teacher(layers=3)
    prune_heads(teacher, {0: [1], 2: [0, 3]})
    cut = keep_layers(teacher, [0, 2])
    assert cut.config.pruned_heads == {0: [1], 1: [0, 3]}
    assert cut.config.layer_num_heads == [3, 2]
    twice = keep_layers(cut, [1])
    assert twice.config.kept_layers == [2]
    cut.save_pretrained(tmp_path)
    batch = random_batch(cut.config)
    with torch.no_grad():
        assert torch.equal(BertForSequenceClassification.from_pretrained(tmp_path).eval()(**batch).logits,
                           cut(**batch).logits)


def test_layerdrop_zero_is_the_identity_and_eval_runs_every_layer():
    model = _teacher(cls=BertModel)
    batch = random_batch(model.config)
    with torch.no_grad():
        reference = model(**batch).sequence_output
        set_layerdrop(model, 0.0)
        model.train()
        assert torch.equal(model(**batch).sequence_output, reference)
        set_layerdrop(model, 0.9)
        model.eval()
        assert torch.equal(model(**batch).sequence_output, reference)


def test_layerdrop_skips_whole_layers_only_in_training(tmp_path):
    model = _teacher(cls=BertModel)
    set_layerdrop(model, 0.5)
    assert model.config.layerdrop == 0.5
    batch = random_batch(model.config)
    model.train()
    seen = set()
    with torch.no_grad():
        for seed in range(12):
            # The decisions come from the encoder's own generator (the Trainer seeds it alike on
            # every DDP process), one uniform draw per layer.
            drop = (torch.rand(5, generator=torch.Generator().manual_seed(seed)) < 0.5).tolist()
            model.encoder.shared_generator.manual_seed(seed)
            out = model(**batch, output_hidden_states=True)
            kept = [i for i in range(5) if not drop[i]]
            seen.add(tuple(kept))
            assert len(out.hidden_states) == 6  # one entry per layer, skipped ones included
            if not kept:
                assert torch.equal(out.sequence_output, out.embedding_output)
                continue
            reference = keep_layers(model, kept).eval()(**batch).sequence_output
            assert (out.sequence_output - reference).abs().max() < 1e-5
    assert len(seen) > 3  # different batches skip different layers
    # saved with the model, and a fresh load trains with it again
    model.save_pretrained(tmp_path)
    assert BertModel.from_pretrained(tmp_path).encoder.layerdrop == 0.5
    with pytest.raises(ConfigError):
        set_layerdrop(model, 1.0)


def test_layerdrop_leaves_the_global_rng_alone_and_asks_ddp_to_find_unused_parameters():
    model = _teacher()  # no dropout: a training forward draws only LayerDrop's decisions
    assert not model.may_leave_parameters_unused  # DDP skips the search for unused parameters
    set_layerdrop(model, 0.5)
    assert model.may_leave_parameters_unused
    model.train()
    # The global RNG is each DDP process's own (its dropout masks); the choice of layers must not
    # come from it.
    state = torch.get_rng_state()
    generator_state = model.bert.encoder.shared_generator.get_state()
    model(**random_batch(model.config))
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(model.bert.encoder.shared_generator.get_state(), generator_state)


def test_prune_layers_and_evaluate_depths():
    model = _teacher(layers=4)
    half = prune_layers(model, "every_other")
    assert half.config.num_hidden_layers == 2 and len(model.bert.encoder.layer) == 4
    batch = random_batch(model.config)
    calls = []

    def eval_fn(m):
        calls.append(m.training)
        with torch.no_grad():
            return {"mean_logit": float(m(**batch).logits.mean())}

    model.train()
    rows = evaluate_depths(model, eval_fn)
    assert [r["depth"] for r in rows] == [4, 3, 2, 1] and calls == [False] * 4
    assert rows[2]["layers"] == uniform_layers(4, 2) == [1, 3]
    assert rows[0]["parameters"] > rows[-1]["parameters"]
    assert model.training and len(model.bert.encoder.layer) == 4
    rows = evaluate_depths(model, lambda m: 1.0, layer_sets=["every_other", [3]])
    assert [r["layers"] for r in rows] == [[0, 2], [3]] and rows[0]["metric"] == 1.0
    assert "| 2 | 0,2 |" in format_depth_table(rows)


def test_one_config_object_per_model_through_every_compression_step(tmp_path):
    def shared(model):
        return model.bert.config is model.config and model.bert.encoder.config is model.config

    teacher = _teacher()
    prune_heads(teacher, {1: [0]})
    set_layerdrop(teacher, 0.3)
    assert shared(teacher) and teacher.bert.encoder.layerdrop == 0.3
    student = student_from_teacher(teacher, [1, 3])
    assert shared(student) and student.config is not teacher.config
    assert student.config.pruned_heads == {0: [0]} and student.config.layer_num_heads == [3, 4]
    assert teacher.config.pruned_heads == {1: [0]} and teacher.config.num_hidden_layers == 5
    student.save_pretrained(tmp_path)
    loaded = BertForSequenceClassification.from_pretrained(tmp_path)
    assert shared(loaded) and loaded.config.copy(extra={}) == student.config
    assert (loaded.bert.encoder.layerdrop, loaded.config.kept_layers) == (0.3, [1, 3])
