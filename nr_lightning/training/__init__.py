"""Training one run: the train CLI and `build`, the LightningModule, the LM loss, optimizer, precision,
callbacks (forgetting curves, gate statistics) and checkpointing / preemption (docs/cluster.md)."""
