"""Task runners: each adds its data and its head to the one Trainer."""
