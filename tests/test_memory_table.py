"""scripts/memory_table.py on its CPU test config: every row of the table is measured by the product's own
commands (``train pretrain`` makes the model, ``train tune`` trains it) and none fails; activation
checkpointing is on where the row says so (the variant's card records it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_memory_table_measures_every_configuration_with_the_train_command(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("memory_table", ROOT / "scripts" / "memory_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "rows.json"
    assert module.main(["--arch", "tiny", "--image-size", "32", "--steps", "2", "--work", str(tmp_path / "w"),
                        "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["method"] == "load only" and rows[0]["peak_rss_gib"] > 0
    rows = rows[1:]
    assert [(r["method"], r["activation_checkpointing"]) for r in rows] == [
        ("finetune", False), ("finetune", True), ("prompt-100", False), ("prompt-100", True)]
    assert all(r["status"] == "ok" and r["peak_rss_gib"] > 0 and r["seconds_per_step"] > 0 for r in rows)
    for r in rows:
        folder = tmp_path / "w" / f"tiny-{r['method']}-{'ckpt' if r['activation_checkpointing'] else 'plain'}"
        card = json.loads((folder / "card.json").read_text())
        assert card["execution"]["activation_checkpointing"] is r["activation_checkpointing"]
    assert "| OFA-tiny 32 px | load only |" in capsys.readouterr().out
