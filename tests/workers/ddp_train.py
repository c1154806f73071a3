"""One training run of the micro architecture, launched by ``tests/test_parallel_training.py`` with or
without torchrun: the library's data-parallel path (``training.parallel.job``) on gloo.

Argument: a JSON object (tokenizer folder, tasks, samples, steps, batch, micro-batch, method, dropout,
checkpointing, ...). Rank 0 writes ``result.json`` (per-step global losses, resume point, execution facts)
and ``weights.pt``; every rank writes ``rank{r}.pt`` (its buffers, its trainable parameters before
training, and the names of frozen parameters that hold a gradient). ``kill_at``: that step's rank ``kill_rank`` kills itself (SIGKILL).
``perturb``: rank 1 changes one weight before training (the mismatch check must refuse it).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch

from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.distributed import from_env
from robustbench_ofa.models import OFAConfig, OFAModel
from robustbench_ofa.models.tokenizer import OFATokenizer
from robustbench_ofa.tasks import get_task
from robustbench_ofa.training import TrainConfig, train
from robustbench_ofa.training.parallel import job
from robustbench_ofa.tuning import get_method


def main(a: dict) -> None:
    dist, _ = from_env("cpu")
    tok = OFATokenizer.from_pretrained(a["tok"])
    cfg = OFAConfig(vocab_size=tok.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                    resnet_layers=[1, 1, 1], resnet_base_planes=4, max_position_embeddings=128,
                    dropout=a.get("dropout", 0.0))
    torch.manual_seed(0)
    model = OFAModel(cfg)
    if a.get("method"):
        get_method(a["method"], **a.get("hparams", {})).apply(model)
    if a.get("perturb") and dist.rank == 1:
        with torch.no_grad():
            next(p for p in model.parameters() if p.requires_grad).add_(1e-3)
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    scene = syn.SceneConfig(image_size=32)
    tasks = {t: get_task(t, tok, 32, beam=1) for t in a["tasks"]}
    data = {t: syn.generate(t, "train", a["n"], scene) for t in a["tasks"]}
    losses = []

    def record(step: int, rec: dict) -> None:
        losses.append(rec["loss"])
        if step == a.get("kill_at") and dist.rank == a.get("kill_rank", 1):
            os.kill(os.getpid(), signal.SIGKILL)

    config = TrainConfig(lr=3e-3, max_steps=a["steps"], batch_size=a["batch"], micro_batch_size=a.get("micro"),
                         warmup_steps=2, log_every=1, checkpoint_every=a.get("ckpt", 0), seed=a.get("seed", 0),
                         activation_checkpointing=a.get("ac", False), **a.get("extra", {}))
    with job(dist):
        result = train(model, tasks, data, config, out_dir=a["out"], progress=False, callbacks=[record])
    out = Path(a["out"])
    torch.save({"buffers": {k: v for k, v in model.named_buffers()}, "initial": initial,
                "frozen_grads": [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]},
               out / f"rank{dist.rank}.pt")
    if dist.is_main:
        torch.save(model.state_dict(), out / "weights.pt")
        (out / "result.json").write_text(json.dumps({"losses": losses, "resumed_from": result.resumed_from,
                                                     "execution": result.execution,
                                                     "grad_evals": result.grad_evals}))
    dist.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
