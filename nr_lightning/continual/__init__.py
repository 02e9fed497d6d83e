"""Sequential knowledge addition: train stage after stage with a strategy, measure forgetting (docs/sequence.md)."""
