"""Dynamic and static padding, the feature Dataset, and the length-grouped, sharded, resumable sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertkit.data.batching import (FeatureDataset, LengthGroupedBatchSampler,
                                   PaddingCollator, dataset_lengths, example_length)
from bertkit.data.features import PackedFeatures
from bertkit.data.glue import ClassifierFeatures
from bertkit.errors import ConfigError, DataError


def row(n, label=1):
    return {"input_ids": list(range(1, n + 1)), "attention_mask": [1] * n, "token_type_ids": [0] * n, "labels": label}


def test_pads_to_longest_row():
    batch = PaddingCollator()([row(3), row(5, 0)])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    assert all(t.dtype == torch.long for t in batch.values())


def test_pads_to_max_length_for_static_shapes():
    batch = PaddingCollator(max_length=8, pad_to_max_length=True)([row(3), row(5)])
    assert batch["input_ids"].shape == (2, 8) and batch["token_type_ids"].shape == (2, 8)
    with pytest.raises(DataError, match="6 tokens, more than max_length=5"):
        PaddingCollator(max_length=5, pad_to_max_length=True)([row(6)])
    with pytest.raises(ConfigError, match="needs max_length"):
        PaddingCollator(pad_to_max_length=True)


def test_token_labels_pad_with_ignore_index_and_regression_labels_are_float():
    examples = [{**row(2), "labels": [3, 4]}, {**row(4), "labels": [1, 2, 3, 4]}]
    assert PaddingCollator()(examples)["labels"].tolist() == [[3, 4, -100, -100], [1, 2, 3, 4]]
    static = PaddingCollator(max_length=6, pad_to_max_length=True)(examples)
    assert static["labels"].shape == (2, 6)  # aligned with input_ids, so padded like them
    regression = PaddingCollator()([row(2, 3.5), row(3, 1.0)])
    assert regression["labels"].dtype == torch.float32 and regression["labels"].tolist() == [3.5, 1.0]


def test_keys_not_aligned_with_tokens_pad_to_their_own_longest():
    examples = [{**row(6), "masked_lm_positions": [1, 4], "labels": [7, 8]},
                {**row(9), "masked_lm_positions": [2], "labels": [5]}]
    batch = PaddingCollator(max_length=12, pad_to_max_length=True, pad_values={"masked_lm_positions": 0})(examples)
    assert batch["input_ids"].shape == (2, 12)
    assert batch["masked_lm_positions"].tolist() == [[1, 4], [2, 0]]
    assert batch["labels"].tolist() == [[7, 8], [5, -100]]


def test_multiple_choice_is_three_dimensional():
    def choices(*lengths):
        return {"input_ids": [list(range(1, n + 1)) for n in lengths],
                "attention_mask": [[1] * n for n in lengths], "labels": 0}

    batch = PaddingCollator()([choices(2, 3), choices(4, 1)])
    assert batch["input_ids"].shape == (2, 2, 4)
    assert batch["input_ids"][1, 1].tolist() == [1, 0, 0, 0]
    assert batch["attention_mask"][0].tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    with pytest.raises(DataError, match="'input_ids'.*different shapes"):
        PaddingCollator()([choices(2, 3), choices(2, 3, 4)])
    assert example_length(choices(2, 5, 3)) == 5


def test_collate_errors_name_the_key():
    with pytest.raises(DataError, match="'labels'.*same keys"):
        PaddingCollator()([row(2), {k: v for k, v in row(2).items() if k != "labels"}])


def test_feature_dataset_batches_model_inputs_not_bookkeeping():
    features = [ClassifierFeatures([101, 5, 102, 0], [1, 1, 1, 0], [0, 0, 0, 0], 1),
                ClassifierFeatures([101, 102, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], 0, is_real_example=False)]
    dataset = FeatureDataset(features)
    assert dataset[0] == {"input_ids": [101, 5, 102, 0], "attention_mask": [1, 1, 1, 0],
                          "token_type_ids": [0, 0, 0, 0], "labels": 1}  # is_real_example is bookkeeping
    assert dataset.lengths == [3, 2]  # real tokens, not the padded width
    packed = PackedFeatures.from_features(features, pad_to=4)
    packed_dataset = FeatureDataset(packed)
    assert packed_dataset[1] == dataset[1] and dataset_lengths(packed_dataset) == [3, 2]
    assert "labels" not in FeatureDataset(features, drop=["labels"])[0]


def test_feature_dataset_accepts_numpy_values():
    dataset = FeatureDataset([{"input_ids": np.array([4, 5, 6]), "labels": np.int64(2)}])
    assert dataset[0] == {"input_ids": [4, 5, 6], "labels": 2}
    assert type(dataset[0]["labels"]) is int
    assert PaddingCollator()([dataset[0]])["input_ids"].tolist() == [[4, 5, 6]]


# ---------------------------------------------------------------------------------------------
# The sampler.


def lengths_of(n, seed=0):
    return torch.randint(1, 128, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_every_example_once_per_epoch_and_deterministic():
    lengths = lengths_of(1003)
    sampler = LengthGroupedBatchSampler(1003, 16, lengths=lengths, seed=7)
    batches = sampler.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(1003))
    assert len(batches) == sampler.num_batches == len(sampler) == 63
    assert batches == LengthGroupedBatchSampler(1003, 16, lengths=lengths, seed=7).batches(0)
    assert batches != sampler.batches(1)
    assert batches != LengthGroupedBatchSampler(1003, 16, lengths=lengths, seed=8).batches(0)


def test_grouping_by_length_cuts_padding_and_starts_with_the_longest():
    lengths = lengths_of(4000)

    def padded_tokens(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    grouped = LengthGroupedBatchSampler(4000, 32, lengths=lengths, seed=0).batches(0)
    plain = LengthGroupedBatchSampler(4000, 32, seed=0).batches(0)
    assert padded_tokens(grouped) < 0.7 * padded_tokens(plain)
    assert max(lengths[i] for i in grouped[0]) == max(lengths)
    # The mega-batches keep it random: batch order and membership change with the seed.
    assert grouped != LengthGroupedBatchSampler(4000, 32, lengths=lengths, seed=1).batches(0)


def test_mega_batches_are_sorted_by_length():
    lengths = lengths_of(640)
    sampler = LengthGroupedBatchSampler(640, 4, lengths=lengths, mega_batch_size=10, shuffle=True, seed=3)
    order = torch.randperm(640, generator=torch.Generator().manual_seed(3))
    batches = sampler.global_batches(0)
    # Every batch is a run of one mega-batch (40 examples) sorted longest first.
    for mega in order.split(40):
        ranked = sorted(mega.tolist(), key=lambda i: -lengths[i])
        runs = [ranked[k:k + 4] for k in range(0, 40, 4)]
        assert all(run in batches for run in runs)


def test_without_shuffle_batches_are_sequential():
    sampler = LengthGroupedBatchSampler(10, 4, shuffle=False)
    assert sampler.batches(0) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert LengthGroupedBatchSampler(10, 4, shuffle=False, drop_last=True).batches(0) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_resume_by_position():
    sampler = LengthGroupedBatchSampler(100, 8, lengths=lengths_of(100), seed=1)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, start=5)
    assert list(sampler) == whole[5:] and len(sampler) == len(whole) - 5


@pytest.mark.parametrize("group", [True, False])
def test_shards_split_the_global_batches(group):
    lengths = lengths_of(203)
    single = LengthGroupedBatchSampler(203, 12, lengths=lengths if group else None, seed=5)
    shards = [LengthGroupedBatchSampler(203, 4, lengths=lengths if group else None, seed=5, num_replicas=3, rank=r)
              for r in range(3)]
    per_rank = [s.batches(4) for s in shards]
    assert len({len(b) for b in per_rank}) == 1 == len({s.num_batches for s in shards})
    global_batches = single.batches(4)
    assert [len(b) for b in global_batches] == [12] * 16 + [11]  # 203 = 16 * 12 + 11
    for step, global_batch in enumerate(global_batches[:-1]):
        assert sorted(i for rank in per_rank for i in rank[step]) == sorted(global_batch)
    # The short last batch is topped up with one of its own examples so every rank gets 4.
    last = [i for rank in per_rank for i in rank[-1]]
    assert len(last) == 12 and set(last) == set(global_batches[-1])


def test_uneven_shards_for_evaluation_count_each_example_once():
    shards = [LengthGroupedBatchSampler(10, 2, shuffle=False, num_replicas=4, rank=r, even_shards=False)
              for r in range(4)]
    seen = sorted(i for s in shards for b in s.batches(0) for i in b)
    assert seen == list(range(10))
    assert [len(s.batches(0)) for s in shards] == [2, 2, 1, 1]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), batch=st.integers(1, 17), world=st.integers(1, 4), seed=st.integers(0, 10**6),
       group=st.booleans(), drop_last=st.booleans())
def test_sampler_partition_property(n, batch, world, seed, group, drop_last):
    lengths = lengths_of(n, seed) if group else None
    samplers = [LengthGroupedBatchSampler(n, batch, lengths=lengths, seed=seed, num_replicas=world, rank=r,
                                          drop_last=drop_last) for r in range(world)]
    per_rank = [s.batches(1) for s in samplers]
    assert all(len(b) == samplers[0].num_batches for b in per_rank)
    seen = [i for rank in per_rank for b in rank for i in b]
    full_batches = n // (batch * world)
    if drop_last:
        assert len(seen) == len(set(seen)) == full_batches * batch * world
    else:
        assert set(seen) == set(range(n))  # everything, with at most world-1 repeats to even the shards
        assert len(seen) - n < world
    # Full batches first; a short last batch stays last unless it holds the longest example.
    sizes = [len(b) for b in per_rank[0]]
    assert sizes.count(batch) >= full_batches
    if group and sizes and sizes[0] != batch:
        assert max(lengths[i] for i in per_rank[0][0]) == max(lengths)
    else:
        assert sizes[:full_batches] == [batch] * full_batches


def test_sampler_errors():
    with pytest.raises(ValueError, match="3 lengths for 4 examples"):
        LengthGroupedBatchSampler(4, 2, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="rank 2"):
        LengthGroupedBatchSampler(4, 2, num_replicas=2, rank=2)
    with pytest.raises(DataError, match="empty"):
        LengthGroupedBatchSampler(0, 2)
