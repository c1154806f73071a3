"""``robust-ofa train pretrain|tune``: pretrain a small OFA from scratch, or tune any method from any base.

``tune`` takes comma-separated lists for hyper-parameters (``--prompt-length 16,64 --reparam on,off``,
``--lr 1e-2,3e-2``); more than one combination runs an ablation grid and writes ``ablation.csv/json``.
Every run is resumable: rerunning the same command continues from the last checkpoint in ``--out``.

Under torchrun (``torchrun --nproc-per-node N -m robustbench_ofa train ...``) every rank runs the command
and trains one model with DistributedDataParallel (``training.parallel``); rank 0 alone builds what is
shared (the embedded zoo, a pretraining tokenizer), prints, and writes checkpoints, the model and its card.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from robustbench_ofa.configcli import add_arguments, check_values, help_of, values_from_args
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.training.config import TrainConfig
from robustbench_ofa.training.parallel import StepSplit
from robustbench_ofa.tuning import grid_flags

#: Where the command line's defaults differ from TrainConfig's: CLI runs are resumable by default.
CLI_DEFAULTS = {"checkpoint_every": 100}

def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="pretrain a small OFA or tune a base with any method")
    sub = train.add_subparsers(dest="train_command", required=True)

    p = sub.add_parser("pretrain", help="pretrain an OFA from scratch, multi-task (how the embedded base is made)")
    p.add_argument("--out", required=True, help="output folder (checkpoint, config, weights, tokenizer, card)")
    p.add_argument("--task", default="grounding,ve,vqa", help="comma-separated tasks (default: grounding,ve,vqa)")
    p.add_argument("--data", action="append", default=None, metavar="[TASK=]SPEC",
                   help="training data (default synthetic:train); see robustbench_ofa.data.sources")
    p.add_argument("--arch", default="embedded", help="embedded (the zoo's), or an OFA size: tiny, medium, base, ...")
    p.add_argument("--d-model", type=int, default=None)
    p.add_argument("--layers", type=int, default=None, help="encoder and decoder layers")
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--ffn-dim", type=int, default=None)
    p.add_argument("--resnet-layers", default=None, help="blocks of ResNet stages 1-3, e.g. 1,1,1")
    p.add_argument("--resnet-planes", type=int, default=None, help="ResNet base width (OFA: 64)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder; default: train a BPE on the data's texts")
    p.add_argument("--bpe-vocab", type=int, default=600)
    p.add_argument("--num-bins", type=int, default=None, help="location bins (default: the embedded recipe's)")
    p.add_argument("--random-bin-init", action="store_true",
                   help="OFA's independent random <bin_i> embeddings instead of the smooth initialisation")
    _add_common(p, grid=False)
    p.set_defaults(handler=_distributed(_cmd_pretrain))

    p = sub.add_parser("tune", help="tune a base checkpoint with a tuning method; comma lists run a grid")
    p.add_argument("--base", required=True, help="zoo name (e.g. embedded-base) or checkpoint folder")
    p.add_argument("--method", required=True, help=_method_help())
    p.add_argument("--task", required=True, help="comma-separated tasks")
    p.add_argument("--data", action="append", default=None, metavar="[TASK=]SPEC",
                   help="training data (default synthetic:downstream_train)")
    p.add_argument("--out", required=True, help="output folder (a variant, or runs/ + ablation table for a grid)")
    # each method's own grid flags, as the method declares them (``TuningMethod.grid_flags``)
    for dest, flag in grid_flags().items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, default=None, help=flag.help + " (comma list: grid)")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=V1[,V2...]",
                   help="any hyper-parameter of the method (repeatable); lists run a grid")
    _add_common(p, grid=True)
    p.add_argument("--study-record", default=None, help=argparse.SUPPRESS)  # written by `robust-ofa study run`
    p.set_defaults(handler=_distributed(_cmd_tune))


def _add_common(p: argparse.ArgumentParser, grid: bool) -> None:
    p.add_argument("--eval-data", default="synthetic:downstream_test", metavar="SPEC",
                   help="clean evaluation data after training ('none' to skip)")
    # --n-train: torchrun reads "--n" as an abbreviation of its own --nnodes/--nproc-per-node
    p.add_argument("--n", "--n-train", dest="n", type=int, default=None,
                   help="training samples per task (default: all; synthetic 1000); under torchrun write --n-train")
    p.add_argument("--eval-n", type=int, default=256, help="evaluation samples per task")
    p.add_argument("--image-size", type=int, default=None, help="input resolution (default: the base's, or 96)")
    p.add_argument("--answers", default=None, metavar="FILE",
                   help="answer set of VQA-like tasks: .txt (one per line), .json list, or OFA's "
                        "trainval_ans2label.pkl (default: the most frequent answers of the training data for "
                        "manifests/TSVs, the generator's for synthetic data); stored with the model")
    p.add_argument("--max-answers", type=int, default=None,
                   help="size of an answer set built from the training data (default 3129, as OFA's VQAv2)")
    p.add_argument("--lr", default=None, help=help_of(TrainConfig, "lr") + " (default: the method's own)"
                   + (" (comma list: grid)" if grid else ""))
    # every other training option is generated from TrainConfig (help, default and check written there)
    add_arguments(p.add_argument_group("training"), TrainConfig, skip=("lr",), defaults=CLI_DEFAULTS)
    p.add_argument("--no-bf16", action="store_true", help="keep fp32 on CUDA")
    p.add_argument("--beam", type=int, default=1, help="beam size for grounding/caption evaluation")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--home", default=None, help="cache directory for zoo names")


# ---------------------------------------------------------------------------------------------------
# Shared helpers


def _distributed(handler):
    """``handler`` in the torchrun job the environment describes (or alone): the device becomes the rank's
    (``cuda:LOCAL_RANK``), ranks other than 0 print nothing, and every rank waits at the end until rank 0
    has written the model (``study run``'s next step reads it on every rank)."""
    import contextlib
    import io

    def run(args: argparse.Namespace) -> int:
        from robustbench_ofa.distributed import from_env
        from robustbench_ofa.training.parallel import job

        _check_options(args)
        dist, args.device = from_env(args.device)
        try:
            with job(dist):
                if dist.is_main:
                    code = handler(args)
                else:
                    args.quiet = True
                    with contextlib.redirect_stdout(io.StringIO()):
                        code = handler(args)
            dist.barrier()
            return code
        finally:
            dist.close()

    run.__doc__ = handler.__doc__
    return run


def _tasks_arg(text: str) -> list[str]:
    from robustbench_ofa.tasks import canonical_task

    tasks = [canonical_task(t) for t in text.split(",") if t.strip()]
    if not tasks:
        raise RobustOFAError("--task: name at least one task")
    if len(set(tasks)) != len(tasks):
        raise RobustOFAError(f"--task: duplicate task in '{text}'")
    return tasks


def _check_options(args: argparse.Namespace) -> None:
    """Bad training options and a split that does not divide the batch: one line before any process group
    is made (the handler builds the config itself, with the method's learning rate)."""
    values = values_from_args(TrainConfig, args, skip=("lr",))
    check_values(TrainConfig, values)
    StepSplit(values["batch_size"], int(os.environ.get("WORLD_SIZE", "1")), values["micro_batch_size"])


def _train_config(args: argparse.Namespace, lr: float, default_steps: int) -> Any:
    """The run's TrainConfig from the generated options; a bad value is one line naming its option."""
    values = values_from_args(TrainConfig, args, skip=("lr",))
    if values["max_steps"] is None and values["epochs"] is None:
        values["max_steps"] = default_steps
    values["lr"] = lr
    check_values(TrainConfig, values)
    return TrainConfig(**values, bf16=False if args.no_bf16 else None)


def _scene_fields(card: Any | None = None) -> dict[str, Any]:
    """Generator settings for synthetic data: those the base model was trained on (its card), else the
    embedded zoo's, so tuning or evaluating a model on synthetic data sees the scenes it was made for."""
    from robustbench_ofa.zoo.recipe import EMBEDDED

    scene = dict(((getattr(card, "data", None) or {}).get("scene")) or EMBEDDED.scene)
    scene.pop("image_size", None)
    return scene


def _load_data(specs: list[str] | None, default: str, tasks: list[str], n: int | None, image_size: int,
               default_n: int, scene_fields: dict[str, Any]) -> dict[str, list]:
    from robustbench_ofa.data.sources import parse_task_sources
    from robustbench_ofa.data.synthetic import SceneConfig

    if n is not None and n < 1:
        raise RobustOFAError(f"--n: expected a positive sample count, got {n}")
    sources = parse_task_sources(specs or [default], tasks)
    scene = SceneConfig(image_size=image_size, **scene_fields)
    data = {}
    for task, source in sources.items():
        limit = n if n is not None else (default_n if source.kind == "synthetic" and source.n is None else None)
        samples = source.load(task, limit, scene=scene)
        if not samples:
            raise RobustOFAError(f"data source '{source}' gave no {task} samples")
        data[task] = samples
    return data


def _eval_data(args: argparse.Namespace, tasks: list[str], image_size: int,
               scene_fields: dict[str, Any]) -> dict[str, list] | None:
    if str(args.eval_data).lower() == "none":
        return None
    return _load_data([args.eval_data], args.eval_data, tasks, args.eval_n, image_size, args.eval_n, scene_fields)


def _make_tasks(tokenizer, tasks: list[str], image_size: int, beam: int,
                answers: dict[str, list[str]] | None = None) -> dict[str, Any]:
    from robustbench_ofa.tasks import get_task

    if beam < 1:
        raise RobustOFAError(f"--beam: expected >= 1, got {beam}")
    return {t: get_task(t, tokenizer, image_size, beam=beam, **({"answers": answers[t]} if t in (answers or {}) else {}))
            for t in tasks}


def _answer_sets(args: argparse.Namespace, tasks: list[str], data: dict[str, list]) -> dict[str, list[str]]:
    """Answer sets of the open-vocabulary closed-answer tasks (VQA) to tune with and store: ``--answers``,
    else, for data that is not the generator's, its most frequent answers (``--max-answers``)."""
    from robustbench_ofa.data.sources import parse_task_sources
    from robustbench_ofa.tasks import task_class
    from robustbench_ofa.tasks.answers import MAX_ANSWERS, answers_from_samples, load_answers

    if args.max_answers is not None and args.answers:
        raise RobustOFAError("--max-answers: applies to an answer set built from the data, not to --answers FILE")
    sources = parse_task_sources(args.data or ["synthetic:train"], tasks)
    out = {}
    for t in tasks:
        if not task_class(t).open_answer_set:
            continue
        if args.answers:
            out[t] = load_answers(args.answers)
        elif sources[t].kind != "synthetic":
            out[t] = answers_from_samples(data[t], args.max_answers or MAX_ANSWERS)
    if args.max_answers is not None and not out:
        raise RobustOFAError("--max-answers: applies to a VQA-like task trained on a manifest or TSV (the "
                             "generator's data keeps its own answer set)")
    return out


def _answerable_only(tasks: dict[str, Any], data: dict[str, list], answers: dict[str, list[str]]) -> None:
    """Training samples with no answer in the set cannot be a training target: dropped, and said so."""
    for t in answers:
        keep = [s for s in data[t] if tasks[t].answerable(s)]
        if not keep:
            raise RobustOFAError(f"--answers: none of the {len(data[t])} {t} training samples has an answer in the "
                                 f"answer set of {len(answers[t])} answers")
        if len(keep) < len(data[t]):
            print(f"{t}: {len(data[t]) - len(keep)} of {len(data[t])} training samples have no answer in the "
                  f"answer set ({len(answers[t])} answers) and are left out of training")
        data[t] = keep


def _single_float(text: str | None, default: float, flag: str) -> float:
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise RobustOFAError(f"{flag}: expected a number, got '{text}'") from None


def _print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    from robustbench_ofa.training.loop import MAIN_METRIC

    for task, m in metrics.items():
        key = MAIN_METRIC.get(task)
        print(f"  {task}: {key} {100 * m[key]:.1f}% (n={m['n']})" if key in m else f"  {task}: {m}")


# ---------------------------------------------------------------------------------------------------
# pretrain


def _arch_config(args: argparse.Namespace, vocab_size: int) -> Any:
    from robustbench_ofa.models import OFAConfig
    from robustbench_ofa.models.config import SIZE_PRESETS
    from robustbench_ofa.zoo.recipe import EMBEDDED

    if args.arch == "embedded":
        fields = dict(EMBEDDED.model)
    elif args.arch in SIZE_PRESETS:
        fields = dict(SIZE_PRESETS[args.arch])
    else:
        raise RobustOFAError(f"--arch: expected embedded or one of {', '.join(SIZE_PRESETS)}, got '{args.arch}'")
    if args.d_model is not None:
        fields["d_model"] = args.d_model
    if args.layers is not None:
        fields["encoder_layers"] = fields["decoder_layers"] = args.layers
    if args.heads is not None:
        fields["encoder_attention_heads"] = fields["decoder_attention_heads"] = args.heads
    if args.ffn_dim is not None:
        fields["encoder_ffn_dim"] = fields["decoder_ffn_dim"] = args.ffn_dim
    if args.resnet_planes is not None:
        fields["resnet_base_planes"] = args.resnet_planes
    if args.resnet_layers is not None:
        try:
            fields["resnet_layers"] = [int(v) for v in args.resnet_layers.split(",")]
        except ValueError:
            raise RobustOFAError(f"--resnet-layers: expected three integers like 1,1,1, got '{args.resnet_layers}'") from None
    config = OFAConfig(**{**fields, "vocab_size": vocab_size})
    config.validate()
    return config


def _shared_tokenizer(args: argparse.Namespace, out: Path, data: dict[str, list]):
    """The pretraining tokenizer; under torchrun rank 0 trains and writes it, the other ranks read it."""
    from robustbench_ofa.models.tokenizer import OFATokenizer
    from robustbench_ofa.training.parallel import current

    dist = current()
    if not dist.active or args.tokenizer:
        return _pretrain_tokenizer(args, out, data)
    tokenizer = dist.raise_together(lambda: _pretrain_tokenizer(args, out, data), dist.is_main)
    later = dist.raise_together(lambda: OFATokenizer.from_pretrained(out / "tokenizer"), not dist.is_main)
    return tokenizer if dist.is_main else later


def _pretrain_tokenizer(args: argparse.Namespace, out: Path, data: dict[str, list]):
    from robustbench_ofa.data.synthetic import corpus_texts
    from robustbench_ofa.models.tokenizer import OFATokenizer, train_bpe
    from robustbench_ofa.tasks import instruction, task_names
    from robustbench_ofa.zoo.recipe import EMBEDDED

    if args.tokenizer:
        return OFATokenizer.from_pretrained(args.tokenizer, num_bins=args.num_bins)
    texts = corpus_texts() + [instruction(t, "x") for t in task_names()]
    for samples in data.values():
        for s in samples:
            texts += [s.text, *(s.captions or []), *(s.answers or [])] + ([s.premise] if s.premise else [])
    bins = args.num_bins or EMBEDDED.num_bins
    return train_bpe([t for t in texts if t], out / "tokenizer", vocab_size=args.bpe_vocab, num_bins=bins)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    import torch

    from robustbench_ofa.cards import CARD_FILE, ModelCard
    from robustbench_ofa.models import OFAModel
    from robustbench_ofa.training.init import init_bin_embeddings
    from robustbench_ofa.training.pipeline import RunInfo, train_evaluate_save
    from robustbench_ofa.zoo.recipe import EMBEDDED

    out = Path(args.out)
    if (out / CARD_FILE).is_file() and not args.no_resume:
        print(f"{out}: already trained (delete it or pass --no-resume to train again)")
        _print_metrics(ModelCard.read(out).clean)
        return 0
    tasks = _tasks_arg(args.task)
    image_size = args.image_size or EMBEDDED.image_size
    lr = _single_float(args.lr, EMBEDDED.pretrain.lr, "--lr")
    config = _train_config(args, lr, EMBEDDED.pretrain.max_steps or 1000)
    scene = _scene_fields()
    data = _load_data(args.data, "synthetic:train", tasks, args.n, image_size, EMBEDDED.pretrain_n, scene)
    eval_data = _eval_data(args, tasks, image_size, scene)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _shared_tokenizer(args, out, data)
    model_config = _arch_config(args, tokenizer.vocab_size)
    torch.manual_seed(args.seed)
    model = OFAModel(model_config)
    if not args.random_bin_init:
        init_bin_embeddings(model, tokenizer, seed=args.seed)
    answers = _answer_sets(args, tasks, data)
    task_objs = _make_tasks(tokenizer, tasks, image_size, args.beam, answers)
    _answerable_only(task_objs, data, answers)
    info = RunInfo(name=out.name, tasks=tasks, source="trained", seed=args.seed, image_size=image_size,
                   data={"train": args.data or ["synthetic:train"], "eval": args.eval_data,
                         "scene": {"image_size": image_size, **scene}}, answers=answers)
    done = train_evaluate_save(model, task_objs, data, config, info, out,
                               eval_data=eval_data, tokenizer=tokenizer, progress=not args.quiet, desc="pretrain",
                               resume=not args.no_resume)
    print(f"pretrained {out} in {done.train.steps} steps ({done.train.seconds:.0f} s)")
    _print_metrics(done.card.clean)
    return 0


# ---------------------------------------------------------------------------------------------------
# tune


def _grid_specs(args: argparse.Namespace) -> dict[str, str]:
    specs: dict[str, str] = {}
    for dest, flag in grid_flags().items():
        method, key = flag.method, flag.key
        value = getattr(args, dest)
        if value is None:
            continue
        if args.method != method:
            flag = "--" + dest.replace("_", "-")
            raise RobustOFAError(f"{flag} applies to --method {method}, not '{args.method}'")
        specs[key] = value
    for item in args.hparam:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RobustOFAError(f"--hparam '{item}': expected KEY=VALUE[,VALUE...]")
        if key.strip() in specs:
            raise RobustOFAError(f"--hparam '{item}': hyper-parameter '{key.strip()}' given twice")
        specs[key.strip()] = value
    if args.lr is not None:
        specs["lr"] = args.lr
    return specs


def _resolve_base(args: argparse.Namespace) -> tuple[Path, Any]:
    """The base checkpoint folder and its ZooModel (a variant cannot be a base)."""
    from robustbench_ofa.training.parallel import current
    from robustbench_ofa.zoo import get

    # under torchrun rank 0 builds a missing zoo model (alone: zoo.build) first; the others then find it
    entry = current().main_first(lambda: get(args.base, home=args.home, progress=not args.quiet))
    if getattr(entry.model, "variant_card", None) is not None:
        raise RobustOFAError(f"--base {args.base}: is a tuned variant; tune from a full checkpoint")
    path = Path(entry.card.path or args.base)
    return path, entry


def _method_help() -> str:
    """``--method`` help, generated from the tuning registry (each method with its default learning rate)."""
    from robustbench_ofa.tuning import method_help

    return method_help()


def _cmd_tune(args: argparse.Namespace) -> int:
    from robustbench_ofa.models.loading import load_pretrained
    from robustbench_ofa.training.ablation import expand_grid, parse_grid, run_grid
    from robustbench_ofa.tuning import METHODS

    METHODS.get(args.method)  # unknown method: one-line error before any work
    tasks = _tasks_arg(args.task)
    grid = parse_grid(args.method, _grid_specs(args))
    points = expand_grid(grid)
    config = _train_config(args, METHODS.get(args.method).default_lr, 300)  # bad options: before any work
    base_dir, entry = _resolve_base(args)
    image_size = args.image_size or entry.image_size
    tokenizer = entry.tokenizer
    scene = _scene_fields(entry.card)
    data = _load_data(args.data, "synthetic:downstream_train", tasks, args.n, image_size, 1000, scene)
    eval_data = _eval_data(args, tasks, image_size, scene)
    answers = _answer_sets(args, tasks, data)
    task_objs = _make_tasks(tokenizer, tasks, image_size, args.beam, answers)
    _answerable_only(task_objs, data, answers)

    def run_one(run_dir: Path, hparams: dict[str, Any], cfg) -> dict[str, Any]:
        model = load_pretrained(base_dir, cfg.device)
        return _tune_one(model, base_dir, args, hparams, cfg, task_objs, data, eval_data, run_dir, image_size, scene,
                         answers)

    out = Path(args.out)
    if len(points) == 1:
        point = points[0]
        hparams = {k: v for k, v in point.items() if k != "lr"}
        cfg = config.replace(lr=point["lr"]) if "lr" in point else config
        result = run_one(out, hparams, cfg)
        print(f"tuned {args.method} variant -> {out} ({result['trainable_params']:,} trainable parameters)")
        _print_metrics(result["metrics"])
        return 0
    rows = run_grid(args.method, {}, grid, config, out, run_one, progress=not args.quiet)
    print(f"ablation: {len(rows)} runs -> {out / 'ablation.csv'} and {out / 'ablation.json'}")
    return 0


def _tune_one(model, base_dir: Path, args, hparams, cfg, tasks, data, eval_data, out: Path,
              image_size: int, scene: dict[str, Any], answers: dict[str, list[str]] | None = None) -> dict[str, Any]:
    import torch

    from robustbench_ofa.cards import CARD_FILE
    from robustbench_ofa.study.record import read_study_record
    from robustbench_ofa.training.pipeline import RunInfo, train_evaluate_save
    from robustbench_ofa.tuning import get_method
    from robustbench_ofa.tuning.variant import read_variant_card

    if (out / CARD_FILE).is_file() and not args.no_resume:
        card = read_variant_card(out)
        return {"trainable_params": card.trainable_params, "metrics": card.clean, "train_seconds": card.build_seconds,
                "hparams": card.hparams}
    torch.manual_seed(cfg.seed)
    get_method(args.method, **hparams).apply(model)
    info = RunInfo(name=out.name, tasks=list(tasks), source="trained", base=str(args.base), seed=cfg.seed,
                   image_size=image_size, data={"train": args.data or ["synthetic:downstream_train"],
                                                "eval": args.eval_data, "scene": {"image_size": image_size, **scene}},
                   answers=dict(answers or {}), study=read_study_record(args.study_record))
    done = train_evaluate_save(model, tasks, data, cfg, info, out, eval_data=eval_data, base_dir=base_dir,
                               progress=not args.quiet, desc=f"tune {args.method}", resume=not args.no_resume)
    return {"trainable_params": done.card.trainable_params, "metrics": done.card.clean,
            "train_seconds": done.train.seconds, "hparams": done.card.hparams}
