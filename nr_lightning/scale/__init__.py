"""Scale-out: world size, gradient accumulation, Lightning strategies and the dry-run memory plan (docs/cluster.md)."""
