"""Training one run: the train CLI and `build`, the LightningModule, the LM loss, optimizer, precision,
callbacks (forgetting curves, gate statistics), checkpointing / preemption (docs/cluster.md) and the English base
build (english_base.py). Imports nothing: the train CLI imports training.preemption before torch."""
