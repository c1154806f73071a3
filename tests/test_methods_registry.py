"""Every registered tuning method, timm style: a method added to the registry is checked here unedited.

Per method, with its own micro hyper-parameters (``TuningMethod.micro_hparams``): what it declares
(default learning rate, grid flags, command-line parsing of every hyper-parameter), that the trainable set
is right, that one training step changes only trainable tensors, the save/load round trip of a variant,
and that it recognises (and rebuilds itself from) its own tensors in a checkpoint's state dict.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import jitter_trainable, randomize, small_config

import robustbench_ofa.tuning as tuning_pkg
from robustbench_ofa.cli import build_parser, main
from robustbench_ofa.commands import train as train_cmd
from robustbench_ofa.models import OFAModel
from robustbench_ofa.models.fairseq import hf_to_fairseq_name
from robustbench_ofa.models.loading import load_fairseq, state_extensions
from robustbench_ofa.tuning import (
    METHODS,
    MethodConfig,
    TuningMethod,
    count_trainable,
    get_method,
    grid_flags,
)
from robustbench_ofa.tuning.base import MethodRegistry, method_help, trainable_state
from robustbench_ofa.tuning.variant import load_variant, save_variant

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels

NAMES = METHODS.names()
TIED = {"decoder.embed_tokens.weight", "decoder.output_projection.weight"}


def _hparams(name: str) -> dict:
    return METHODS.get(name).micro_hparams({})


def _base(seed: int = 0) -> OFAModel:
    torch.manual_seed(seed)
    return randomize(OFAModel(small_config()))


def _tuned(name: str, seed: int = 0) -> OFAModel:
    model = _base(seed)
    get_method(name, **_hparams(name)).apply(model)
    return model


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _logits(model, batch):
    ids, images, dec = batch
    return model(input_ids=ids, patch_images=images, decoder_input_ids=dec).logits


def _cli_text(value) -> str:
    """How a user writes ``value`` on the command line."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, list):
        return "+".join(map(str, value))
    return str(value)


# --- what a method declares -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_method_declares_its_lr_grid_and_parses_every_hyper_parameter(name):
    cls = METHODS.get(name)
    assert cls.name == name
    assert isinstance(cls.default_lr, (int, float)) and 0 < cls.default_lr < 1
    assert issubclass(cls.config_cls, MethodConfig) and dataclasses.is_dataclass(cls.config_cls)
    assert set(cls.grid_flags.values()) <= set(cls.hparam_names())
    get_method(name, **_hparams(name))  # the micro hyper-parameters are valid
    defaults = cls.config_cls()
    for key in cls.hparam_names():  # every hyper-parameter can be given (and swept) on the command line
        value = getattr(defaults, key)
        assert cls.parse_hparam(key, _cli_text(value)) == value, key
    assert f"{name} (default lr {cls.default_lr:g})" in method_help()


def test_every_method_class_in_the_package_is_registered():
    registered = {METHODS.get(n) for n in NAMES}
    found = []
    for info in pkgutil.iter_modules(tuning_pkg.__path__):
        module = importlib.import_module(f"{tuning_pkg.__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, TuningMethod) and obj is not TuningMethod and obj.__module__ == module.__name__:
                found.append(obj)
                assert obj in registered, f"{obj.__name__} is not registered (import its module in tuning/__init__)"
    assert len(found) == len(NAMES)
    assert [e.name for e in state_extensions()] == NAMES  # the fairseq loader asks every method


def test_registration_refuses_a_method_missing_what_the_rest_relies_on():
    registry = MethodRegistry("tuning method")

    def method(**attrs):
        return type("M", (TuningMethod,), {"trainable": lambda self, n, p: True, **attrs})

    with pytest.raises(TypeError, match="'nolr'.*default_lr"):
        registry.register("nolr")(method())
    with pytest.raises(TypeError, match="default_lr"):
        registry.register("zero")(method(default_lr=0.0))
    with pytest.raises(TypeError, match="--x-size names 'size', which is not a hyper-parameter"):
        registry.register("flag")(method(default_lr=1e-3, grid_flags={"x-size": "size"}))
    with pytest.raises(TypeError, match="not the registered name"):
        registry.register("b")(method(default_lr=1e-3, name="a"))
    with pytest.raises(TypeError, match="subclass of TuningMethod"):
        registry.register("plain")(type("Plain", (), {"default_lr": 1e-3}))
    ok = registry.register("ok")(method(default_lr=1e-3))
    assert ok.name == "ok" and registry.names() == ["ok"]
    assert [e.name for e in state_extensions()] == NAMES  # a private registry leaves the loader alone


def test_cli_method_help_grid_flags_and_default_lr_come_from_the_registry(monkeypatch):
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    tune = next(a for a in train._actions if isinstance(a, argparse._SubParsersAction)).choices["tune"]
    method = next(a for a in tune._actions if "--method" in a.option_strings)
    assert method.help == method_help() and all(n in method.help for n in NAMES)
    # the grid flags of the CLI are the ones the methods declare, each with its method's help
    options = {a.dest: a for a in tune._actions}
    for dest, f in grid_flags().items():
        assert dest in options and options[dest].help.startswith(f"{f.method}: ")

    class Stop(Exception):
        pass

    def stop(args, lr, steps):
        raise Stop(lr)

    entry = SimpleNamespace(image_size=32, tokenizer=None, card=None)
    monkeypatch.setattr(train_cmd, "_resolve_base", lambda args: (Path("."), entry))
    monkeypatch.setattr(train_cmd, "_train_config", stop)
    for name in NAMES:
        with pytest.raises(Stop) as info:
            main(["train", "tune", "--base", "b", "--method", name, "--task", "ve", "--out", "o", "--quiet"])
        assert info.value.args[0] == METHODS.get(name).default_lr


# --- what a method does ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_trainable_set_is_the_methods_and_deterministic(name):
    base_names = set(dict(_base().named_parameters()))
    model = _tuned(name)
    method = model.tuning_method
    trainable = _trainable(model)
    assert trainable, "the method trains nothing"
    assert trainable == {n for n, p in model.named_parameters() if method.trainable(n, p)}
    assert set(trainable_state(model)) == trainable  # exactly what a variant file stores
    assert set(dict(model.named_parameters())) - base_names <= trainable  # the method's own modules train
    total = sum(p.numel() for p in model.parameters())
    if method.parameter_efficient:
        assert count_trainable(model) < total and model.freeze_batchnorm
    assert _trainable(_tuned(name, seed=1)) == trainable


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_changes_only_trainable_tensors(name, batch):
    model = _tuned(name).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    _logits(model, batch).logsumexp(-1).mean().backward()
    opt.step()
    after = model.state_dict()
    trainable = _trainable(model)
    if "encoder.embed_tokens.weight" in trainable:
        trainable |= TIED  # aliases of the one shared embedding
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    params = {k for k in changed if "running_" not in k and "num_batches" not in k}
    assert params, "nothing trained"
    assert params <= trainable
    if model.freeze_batchnorm:
        assert not any("running_" in k for k in changed), "BatchNorm statistics must stay frozen"


@pytest.mark.parametrize("name", NAMES)
def test_variant_save_load_round_trip(name, tmp_path, batch):
    _base().eval().save_pretrained(tmp_path / "base")
    tuned = OFAModel.from_pretrained(tmp_path / "base")
    get_method(name, **_hparams(name)).apply(tuned)
    jitter_trainable(tuned).eval()
    out = save_variant(tuned, tmp_path / "v", name="v", task="ve,vqa", base_dir=tmp_path / "base")
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "trainable.safetensors"]
    again = load_variant(out)
    torch.testing.assert_close(_logits(again, batch), _logits(tuned, batch))
    saved, loaded = trainable_state(tuned), trainable_state(again)
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    card = again.variant_card
    assert card.method == name and card.hparams == tuned.tuning_method.config.to_dict()
    assert card.tasks == ["ve", "vqa"] and card.trainable_params == count_trainable(tuned)
    assert set(card.sha256) == {"base", "variant"} and card.base_path == str((tmp_path / "base").resolve())


@pytest.mark.parametrize("name", NAMES)
def test_method_recognises_and_rebuilds_itself_from_a_state_dict(name, tmp_path, batch):
    tuned = randomize(_tuned(name), seed=2).eval()
    state, config = tuned.state_dict(), tuned.config
    plain = _base().state_dict()
    for other in NAMES:  # no method claims a plain checkpoint, nor another method's tensors
        assert METHODS.get(other).detect(plain, config) is None, other
        if other != name:
            assert METHODS.get(other).detect(state, config) is None, other
    cls = METHODS.get(name)
    hparams = cls.detect(state, config)
    added = set(state) - set(plain)
    if hparams is None:
        if added:  # allowed only when the tensors do not determine the hyper-parameters (LoRA's alpha)
            assert cls.detect.__func__ is not TuningMethod.detect.__func__, "say why detect() returns None"
            return
    else:
        applied = tuned.tuning_method.config.to_dict()
        assert {k: applied[k] for k in hparams} == hparams
        rebuilt = _base()
        cls.attach(rebuilt, hparams)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in state.items()}
    # a fairseq checkpoint of the tuned model loads with its modules, architecture and all from the file
    fairseq_state = {hf_to_fairseq_name(k): v.clone() for k, v in state.items()}
    torch.save({"model": fairseq_state}, tmp_path / "checkpoint.pt")
    loaded = load_fairseq(tmp_path / "checkpoint.pt")
    torch.testing.assert_close(_logits(loaded, batch), _logits(tuned, batch))
