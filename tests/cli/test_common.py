"""The runners' flags: declared once (a Task's fields come from the flags of the same name), and
--cache_dir only where features are cached."""

import dataclasses

import pytest

from bertkit.cli.common import task_from_args
from bertkit.cli.main import build_parser
from bertkit.errors import BertkitError
from bertkit.tasks.classifier import ClassifierTask
from bertkit.tasks.multiple_choice import MultipleChoiceTask
from bertkit.tasks.ner import NerTask
from bertkit.tasks.pretraining import PretrainingTask
from bertkit.tasks.squad import SquadTask

RUNNERS = {"run_classifier": (ClassifierTask, ["--task_name=MRPC", "--data_dir=d"]),
           "run_ner": (NerTask, ["--data_dir=d", "--doc_stride=7"]),
           "run_squad": (SquadTask, ["--train_file=t.json", "--doc_stride=7", "--max_query_length=16"]),
           "run_multiple_choice": (MultipleChoiceTask, ["--task=swag", "--data_dir=d"]),
           "run_pretraining": (PretrainingTask, ["--input_file=shards"])}


def parse(command: str, *argv: str):
    return build_parser(command).parse_args([command, "--output_dir=o", "--do_train", "--max_seq_length=64", *argv])


@pytest.mark.parametrize("command", RUNNERS)
def test_every_flag_named_as_a_task_field_reaches_the_task(command):
    task_class, argv = RUNNERS[command]
    args = parse(command, *argv)
    task = task_from_args(task_class, args, **({"cache_dir": None} if command == "run_classifier" else {}))
    assert isinstance(task, task_class) and task.do_train and task.max_seq_length == 64
    for field in dataclasses.fields(task_class):
        if hasattr(args, field.name) and field.name != "cache_dir":
            assert getattr(task, field.name) == getattr(args, field.name), field.name


def test_cache_dir_is_a_flag_of_the_runners_that_cache_features_only():
    assert parse("run_classifier", "--task_name=MRPC", "--data_dir=d", "--cache_dir=none").cache_dir == "none"
    for command in ("run_ner", "run_squad", "run_multiple_choice", "run_pretraining"):
        with pytest.raises(SystemExit):
            parse(command, *RUNNERS[command][1], "--cache_dir=none")


def test_a_bad_flag_fails_when_the_task_is_built():
    with pytest.raises(BertkitError, match="unknown multiple-choice task .nope."):
        task_from_args(MultipleChoiceTask, parse("run_multiple_choice", "--task=nope", "--data_dir=d"))


@pytest.mark.parametrize("command", RUNNERS)
def test_a_task_field_declared_as_an_option_is_its_runners_flag_with_its_default(command):
    """One declaration: the field's default is the flag's, and its help the flag's help."""
    task_class = RUNNERS[command][0]
    parser = build_parser(command)._subparsers._group_actions[0].choices[command]
    actions = {action.dest: action for action in parser._actions}
    options = [f for f in dataclasses.fields(task_class) if "flag" in f.metadata]
    assert options, f"{task_class.__name__} declares no flags"
    for field in options:
        action = actions[field.name]
        default = None if field.default is dataclasses.MISSING else field.default
        assert action.default == default and action.help == field.metadata["flag"].help, field.name
    assert actions["max_seq_length"].default == task_class.max_seq_length


def test_flag_types_follow_the_field_types():
    args = parse("run_ner", "--data_dir=d", "--test_has_labels=false", "--label_list=O,B-X,I-X", "--label_column=2")
    assert args.test_has_labels is False and args.tag_names == ["O", "B-X", "I-X"] and args.label_column == 2
    assert parse("run_ner", "--label_column=tags").label_column == "tags"
    with pytest.raises(SystemExit):
        parse("run_ner", "--label_list=O,O")  # distinct names only
    with pytest.raises(SystemExit):
        parse("run_squad", "--train_file=t.json", "--doc_stride=0")  # the field's minimum, checked when parsed
    assert parse("run_squad", "--train_file=t.json", "--version_2_with_negative").version_2_with_negative is True


def test_a_field_of_a_type_without_a_flag_type_is_a_programming_error():
    import argparse

    from bertkit.cli.common import add_task_arguments
    from bertkit.tasks.base import Task, option

    @dataclasses.dataclass
    class Odd(Task):
        ratio: complex = option(1j, "an unusual type")
        do_train: bool = True

    with pytest.raises(TypeError, match="Odd.ratio"):
        add_task_arguments(argparse.ArgumentParser(), Odd)
    add_task_arguments(argparse.ArgumentParser(), Odd, parsers={"ratio": complex})
