"""Moved to bertkit.data.transfer (the GLUE transfer set is data, and compress/ knows no task);
this import path is kept for one release."""

from bertkit.data.transfer import (MASK_PROBABILITY, UNLABELED, TransferDataset, TransferSource, mask_words,
                                   parse_transfer_set, unlabeled_features, with_transfer_set)

__all__ = ["MASK_PROBABILITY", "UNLABELED", "TransferDataset", "TransferSource", "mask_words", "parse_transfer_set",
           "unlabeled_features", "with_transfer_set"]
