"""Checkpoint loading: strict HF-format directories, fairseq files, safe unpickling, round trips."""

from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch
from conftest import randomize, small_config

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models import OFAConfig, OFAModel
from robustbench_ofa.models.checkpoint_io import load_state_file
from robustbench_ofa.models.fairseq import convert_fairseq_state_dict, fairseq_to_hf_name, hf_to_fairseq_name
from robustbench_ofa.models.loading import load_fairseq
from robustbench_ofa.tuning import get_method

#: Published OFA key lists and configs (copied from the OFA-Sys checkpoints' key dumps in shared/ofa).
SHARED = __import__("pathlib").Path(__file__).resolve().parent / "data" / "ofa"


def write_hf_dir(path, config: OFAConfig, state: dict, name: str = "pytorch_model.bin"):
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(path))
    if name.endswith(".bin"):
        torch.save(state, path / name)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path / name))
    return path


def test_loads_a_checkpoint_built_from_the_published_tiny_key_list(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {}
    for row in (SHARED / "keys_tiny.tsv").read_text().splitlines():
        key, shape = row.split("\t")
        shape = eval(shape)
        # index buffers in released files have other sizes than ours: they must be ignored
        state[key] = torch.zeros(shape, dtype=torch.long) if "bucket" in key or "position_idx" in key \
            else torch.randn(shape, generator=g)
    state["decoder.embed_tokens.weight"] = state["encoder.embed_tokens.weight"]
    state["decoder.output_projection.weight"] = state["encoder.embed_tokens.weight"]
    cfg = OFAConfig.from_size("tiny")
    model = OFAModel.from_pretrained(write_hf_dir(tmp_path / "ofa-tiny", cfg, state))
    sd = model.state_dict()
    for key in ("encoder.layers.3.self_attn.c_attn", "decoder.image_rel_pos_table_list.2.weight",
                "encoder.embed_images.layer3.5.bn3.running_var", "decoder.output_projection.weight"):
        assert torch.equal(sd[key], state[key])
    assert model.encoder.token_rp_bucket.shape == (1024, 1024)  # recomputed, not the file's zeros
    assert int(model.encoder.token_rp_bucket.max()) > 0


def test_save_pretrained_round_trip_is_exact(tmp_path, model, batch):
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    again = OFAModel.from_pretrained(tmp_path / "m")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    ids, images, dec = batch
    torch.testing.assert_close(model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits,
                               again(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits)


def test_models_built_to_be_loaded_skip_their_initialisation_and_load_exactly(tmp_path, model, batch):
    """transformers' ``no_init_weights`` (what the loaders build in) leaves torch.nn.init and the model's
    own init untouched outside it; inside, a model keeps its allocation's memory: a model built there after the
    same seed differs from one initialised normally. Loading over that memory is exact (test above), so
    no parameter is left unloaded."""
    from transformers.modeling_utils import no_init_weights

    inits = {name: getattr(torch.nn.init, name) for name in ("normal_", "kaiming_uniform_", "ones_")}
    poisoned = torch.full((64, 64), float("nan"))
    with no_init_weights():
        torch.nn.init.normal_(poisoned, 0.0, 1.0)
        assert poisoned.isnan().all()
        torch.manual_seed(0)
        skipped = OFAModel(model.config)
    torch.manual_seed(0)
    initialised = OFAModel(model.config)
    assert {name: getattr(torch.nn.init, name) for name in inits} == inits
    assert not torch.equal(skipped.encoder.layers[0].fc1.weight, initialised.encoder.layers[0].fc1.weight)
    with pytest.raises(RuntimeError), no_init_weights():  # restored after an error too
        raise RuntimeError
    assert torch.nn.init.normal_ is inits["normal_"]
    assert skipped.encoder.token_rp_bucket is initialised.encoder.token_rp_bucket  # index tables shared


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("encoder.layers.1.fc1.bias"), "missing 1 key.*encoder.layers.1.fc1.bias"),
    (lambda s: s.__setitem__("encoder.extra.weight", torch.zeros(2)), "unexpected 1 key.*encoder.extra.weight"),
    (lambda s: s.__setitem__("decoder.layers.0.fc2.weight", torch.zeros(3, 3)),
     r"shape mismatch.*decoder.layers.0.fc2.weight file \(3, 3\)"),
])
def test_strict_loading_names_the_offending_key(tmp_path, model, edit, message):
    state = _state(model)
    edit(state)
    d = write_hf_dir(tmp_path / "bad", model.config, state, "model.safetensors")
    with pytest.raises(RobustOFAError, match=message) as exc:
        OFAModel.from_pretrained(d)
    assert "\n" not in str(exc.value)


def test_config_weight_size_mismatch(tmp_path, model):
    d = write_hf_dir(tmp_path / "m", small_config(d_model=128), _state(model))
    with pytest.raises(RobustOFAError, match="does not match the model config"):
        OFAModel.from_pretrained(d)


def test_truncated_and_missing_files(tmp_path, model):
    d = write_hf_dir(tmp_path / "m", model.config, _state(model))
    data = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(RobustOFAError, match="truncated or corrupt"):
        OFAModel.from_pretrained(d)
    (d / "pytorch_model.bin").unlink()
    with pytest.raises(RobustOFAError, match="no weight file"):
        OFAModel.from_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(RobustOFAError, match="invalid JSON"):
        OFAModel.from_pretrained(d)
    with pytest.raises(RobustOFAError, match="not a checkpoint directory"):
        OFAModel.from_pretrained(tmp_path / "nowhere")


class Payload:
    """An object whose unpickling would run code if the loader unpickled blindly."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_arbitrary_pickles_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.bin"
    torch.save({"w": torch.zeros(2), "x": Payload()}, path)
    with pytest.raises(RobustOFAError, match="refused: the file needs arbitrary unpickling"):
        load_state_file(path)
    # even the lenient fairseq path never calls the payload
    loaded = load_state_file(path, allow_training_state=True)
    assert torch.equal(loaded["w"], torch.zeros(2))
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_fairseq_renames_round_trip():
    pairs = {
        "encoder.layers.0.self_attn_ln.weight": "encoder.layers.0.self_attn_mid_layer_norm.weight",
        "encoder.layers.0.ffn_layernorm.bias": "encoder.layers.0.ffn_layer_norm.bias",
        "decoder.layers.1.cross_attn_ln.weight": "decoder.layers.1.cross_attn_mid_layer_norm.weight",
        "decoder.layers.1.encoder_attn.k_proj.weight": "decoder.layers.1.cross_attn.k_proj.weight",
        "decoder.layers.1.encoder_attn_layer_norm.bias": "decoder.layers.1.cross_attn_layer_norm.bias",
        "encoder.layers.2.attn_ln.weight": "encoder.layers.2.self_attn_mid_layer_norm.weight",
        "encoder.layers.0.self_attn_layer_norm.weight": "encoder.layers.0.self_attn_layer_norm.weight",
    }
    for fs, hf in pairs.items():
        assert fairseq_to_hf_name(fs) == hf
    assert hf_to_fairseq_name("decoder.layers.1.cross_attn.k_proj.weight") == "decoder.layers.1.encoder_attn.k_proj.weight"
    converted = convert_fairseq_state_dict({"encoder.version": torch.tensor([3.0]),
                                            "decoder._float_tensor": torch.zeros(1),
                                            "encoder.layers.0.ffn_layernorm.weight": torch.ones(2)})
    assert list(converted) == ["encoder.layers.0.ffn_layer_norm.weight"]


def _as_fairseq(model) -> dict:
    state = {hf_to_fairseq_name(k): v.clone() for k, v in model.state_dict().items()}
    state["encoder.version"] = torch.tensor([3.0])
    return {"model": state, "args": argparse.Namespace(arch="ofa_tiny", lr=1e-4), "extra_state": {"epoch": 3}}


@pytest.mark.parametrize("method, hparams", [
    (None, {}), ("prompt", dict(length=5, depth="both")), ("prompt", dict(length=3, depth="encoder", reparam=True)),
    ("prompt", dict(length=4, depth="decoder", layers=1)), ("adapter", dict(dim=7)),
])
def test_fairseq_checkpoints_load_with_their_tuning_modules(tmp_path, batch, method, hparams):
    torch.manual_seed(0)
    src = OFAModel(small_config())
    if method:
        get_method(method, **hparams).apply(src)
    randomize(src).eval()
    path = tmp_path / "checkpoint_best.pt"
    torch.save(_as_fairseq(src), path)
    loaded = load_fairseq(path)  # architecture inferred from shapes
    assert loaded.config.d_model == 64 and loaded.config.resnet_layers == [1, 1, 1]
    ids, images, dec = batch
    torch.testing.assert_close(loaded(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits,
                               src(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits)


def test_fairseq_loader_knows_no_method_it_asks_the_registered_extensions(tmp_path, monkeypatch):
    from robustbench_ofa.models import loading

    src = randomize(get_method("prompt", length=3).apply(OFAModel(small_config()))).eval()
    path = tmp_path / "checkpoint_best.pt"
    torch.save(_as_fairseq(src), path)
    with pytest.raises(RobustOFAError, match="unexpected 2 key.*_prompt_encoder"):
        load_fairseq(path, extensions=[])  # without the prompt method the tensors are just unexpected
    monkeypatch.setattr(loading, "_EXTENSIONS", {})
    with pytest.raises(RobustOFAError, match="import robustbench_ofa.tuning"):
        load_fairseq(path)
    monkeypatch.undo()
    assert load_fairseq(path).encoder.encoder_prompt_encoder.length == 3


def test_fairseq_file_without_model_dict(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(RobustOFAError, match="field 'model'"):
        load_fairseq(path)


def test_config_json_written_has_every_published_field(tmp_path, model):
    published = json.loads((SHARED / "configs.json").read_text())["common_config_fields"]
    model.save_pretrained(tmp_path / "m")
    written = json.loads((tmp_path / "m" / "config.json").read_text())
    assert set(published) - {"architectures"} <= set(written)
