"""The run's TensorBoard: a custom-scalars layout (forgetting, learning, gates charts) and no `epoch` scalar."""

from __future__ import annotations

import re

from nr_lightning.training.dashboard import LAYOUT, RunLogger


def test_run_logger_writes_layout_and_drops_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    logger = RunLogger(save_dir=str(tmp_path), name="", version="tb", default_hp_metric=False)
    logger.log_metrics({"epoch": 0, "train/lm_loss": 3.0}, step=1)  # Lightning adds `epoch` to every call
    logger.log_metrics({"eval/bpb_en": 1.5, "eval/bpb_fr": 2.0, "eval/bpb_sum": 3.5}, step=1)
    logger.finalize("success")
    acc = EventAccumulator(str(next((tmp_path / "tb").glob("events.out.tfevents.*"))))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert "epoch" not in scalars and {"train/lm_loss", "eval/bpb_en", "eval/bpb_sum"} <= scalars
    layout = layout_pb2.Layout()
    layout.ParseFromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title: [t for t in c.multiline.tag] for cat in layout.category for c in cat.chart}
    assert [cat.title for cat in layout.category][:3] == ["forgetting", "learning", "gates"]

    def shown(chart: str) -> set[str]:
        tags = ("eval/bpb_en", "eval/bpb_en_indomain", "eval/bpb_fr", "eval/bpb_de", "eval/bpb_sum",
                "eval/delta_bpb_en", "eval/delta_bpb_fr")
        return {t for t in tags if any(re.fullmatch(p, t) for p in charts[chart])}

    # English and the new language never share an axis; the Δ chart holds every set on one small scale
    assert shown("English held-out bits per byte (forgetting sets)") == {"eval/bpb_en", "eval/bpb_en_indomain"}
    assert shown("new-language held-out bits per byte") == {"eval/bpb_fr", "eval/bpb_de"}
    assert shown("change against step 0 (bpb; > 0 forgets, < 0 learns)") == {"eval/delta_bpb_en", "eval/delta_bpb_fr"}
    gates = charts["block-gate mean per domain"]
    assert any(re.fullmatch(p, "gates/en_gate_mean") for p in gates)
    assert set(LAYOUT) >= {"forgetting", "learning", "gates"}
