"""The ``plot-ray`` command line.

    plot-ray config FILE [key=value ...]      validate a config and print it resolved
    plot-ray synth --out DIR [--seed N]        write the synthetic preference benchmark
    plot-ray build-model --data DIR --out DIR  train a tokenizer and build a tiny Llama
    plot-ray build-reward-model --data DIR --out DIR   a tiny Bradley-Terry reward model
    plot-ray build-attacker --data DIR --out DIR       a tiny attacker LM for ZeroShot and SFS
    plot-ray prepare --config FILE             Ray Data: validate, tokenize, count tokens
    plot-ray train --config FILE [--resume]    Ray Train + DeepSpeed PLOT fine-tuning
    plot-ray tune --config FILE [--resume]     Ray Tune sweep over tune.space, a run per trial
    plot-ray eval --config FILE [--force]      evaluate models: ASR, helpfulness, logic, perplexity
    plot-ray make-pairs --config FILE [--force]   sample k answers per problem, grade, pair them
    plot-ray demo [--quick|--full] [--out DIR] [--force]   the paper's experiment, end to end
    plot-ray submit --config FILE -- SUB ...   run prepare/train/tune/eval/make-pairs as a Ray job
    plot-ray jobs list|status ID|logs ID|stop ID   the cluster's Ray jobs

Every subcommand has ``--help``. Config errors exit with status 2 and name the offending key.
``prepare``, ``train`` and ``demo`` show their own progress and a final summary; Ray's and
DeepSpeed's worker logs go to a file in the run folder (the summary says where), and to the
terminal too with ``--verbose``. A failed run prints its error in full on stderr (status 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from plot_ray.config import ConfigError, load_config

__all__ = ["main", "build_parser"]


def _print(msg: str = "") -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------ commands
def _config_args(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """``FILE [key=value ...]`` where FILE may be left out: then the first override is no file."""
    if args.file and "=" in args.file and not Path(args.file).exists():
        return None, [args.file, *args.overrides]
    return args.file, list(args.overrides)


def cmd_config(args: argparse.Namespace) -> int:
    cfg = load_config(*_config_args(args))
    if args.json:
        _print(json.dumps(cfg.to_dict(), indent=2))
    else:
        _print(cfg.to_yaml().rstrip())
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from plot_ray.synth import generate_benchmark

    started = time.perf_counter()
    manifest = generate_benchmark(args.out, seed=args.seed, scale=args.scale)
    _print(f"wrote the synthetic benchmark to {args.out} in {time.perf_counter() - started:.1f}s")
    for name, count in sorted(manifest.get("counts", {}).items()):
        _print(f"  {name:<42} {count:>7} rows")
    return 0


def cmd_build_model(args: argparse.Namespace) -> int:
    from plot_ray.models.tiny import TinyModelSpec, build_from_corpus

    spec = TinyModelSpec(hidden_size=args.hidden_size, num_hidden_layers=args.layers)
    summary = build_from_corpus(
        args.data,
        args.out,
        vocab_size=args.vocab_size,
        spec=spec,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
    )
    _print(
        f"built a tiny Llama ({summary['parameters'] / 1e6:.2f}M parameters, vocabulary "
        f"{summary['vocab_size']}) in {summary['seconds']}s → {args.out}"
    )
    if summary["warmup_steps"]:
        _print(
            f"  warm-up: {summary['warmup_steps']} steps, loss {summary['warmup_first_loss']:.2f}"
            f" → {summary['warmup_last_loss']:.2f}"
        )
    return 0


def cmd_build_reward_model(args: argparse.Namespace) -> int:
    from plot_ray.models.reward import build_reward_model

    summary = build_reward_model(
        args.data,
        args.out,
        tokenizer_from=args.tokenizer_from,
        vocab_size=args.vocab_size,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    _print(
        f"built a reward model ({summary['parameters'] / 1e6:.2f}M parameters, vocabulary "
        f"{summary['vocab_size']}) in {summary['seconds']}s → {args.out}"
    )
    _print(
        f"  Bradley-Terry loss {summary['train_first_loss']:.3f} → "
        f"{summary['train_last_loss']:.3f} over {summary['steps']} steps"
    )
    for corpus, held_out in summary["validation"].items():
        _print(
            f"  held-out pair accuracy {corpus:<13} {held_out['accuracy']:.3f} "
            f"({held_out['pairs']} pairs)"
        )
    return 0


def cmd_build_attacker(args: argparse.Namespace) -> int:
    from plot_ray.models.attacker import build_attacker

    summary = build_attacker(
        args.data,
        args.out,
        steps=args.steps,
        tokenizer_from=args.tokenizer_from,
        vocab_size=args.vocab_size,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    _print(
        f"built an attacker LM ({summary['parameters'] / 1e6:.2f}M parameters, vocabulary "
        f"{summary['vocab_size']}) in {summary['seconds']}s → {args.out}"
    )
    _print(
        f"  causal-LM loss {summary['train_first_loss']:.3f} → {summary['train_last_loss']:.3f} "
        f"over {summary['steps']} steps on {summary['corpus_rows']} attacker transcripts"
    )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from plot_ray.data import run_prepare

    cfg = load_config(args.config, args.overrides)
    run_prepare(cfg, verbose=args.verbose)
    return 0


def _training_failed(command: str, exc: BaseException, log: Path) -> int:
    """A worker's error in full on stderr (Ray's error text carries the worker's traceback),
    and where the rest of the workers' output is."""
    print(f"plot-ray {command}: training failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"worker logs (Ray, DeepSpeed): {log}", file=sys.stderr)
    return 1


def cmd_train(args: argparse.Namespace) -> int:
    from plot_ray.train import run_training
    from plot_ray.train.trainer import WORKER_LOG, run_log_dir, summary_lines

    overrides = [*args.overrides, *([f"cluster.address={args.address}"] if args.address else [])]
    cfg = load_config(args.config, overrides)
    try:
        run = run_training(cfg, resume=args.resume, progress=True, verbose=args.verbose)
    except (ConfigError, FileNotFoundError, ValueError):
        raise  # checks on the driver: main() prints their one-line message
    except Exception as exc:  # from the workers, through Ray Train
        return _training_failed("train", exc, run_log_dir(cfg) / WORKER_LOG)
    for line in summary_lines(run.summary):
        _print(line)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from plot_ray.config import load_raw_config, validate_config
    from plot_ray.tune.sweep import main_summary_lines, run_sweep

    base = load_raw_config(args.config, args.overrides)
    cfg = validate_config(base)
    result = run_sweep(cfg, base, resume=args.resume)
    for line in main_summary_lines(result):
        _print(line)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from plot_ray.eval import run_eval

    overrides = list(args.overrides)
    if args.model:  # --model NAME=PATH options replace the config's eval.models
        models = []
        for spec in args.model:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise ConfigError(
                    f"--model {spec!r}: give NAME=PATH (e.g. base=runs/demo/base-model)"
                )
            models.append({"name": name, "path": path})
        overrides.append("eval.models=" + json.dumps(models))  # JSON is YAML
    cfg = load_config(args.config, overrides)
    run_eval(cfg, force=args.force, verbose=args.verbose)
    return 0


def cmd_make_pairs(args: argparse.Namespace) -> int:
    from plot_ray.eval.store import SettingsMismatchError
    from plot_ray.pairs import run_make_pairs

    cfg = load_config(args.config, args.overrides)
    try:
        run_make_pairs(cfg, force=args.force, verbose=args.verbose)
    except SettingsMismatchError as exc:  # samples on disk from other settings
        print(f"plot-ray make-pairs: error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from plot_ray.demo import run_demo

    run_demo(
        Path(args.out), profile=args.profile, seed=args.seed, force=args.force, verbose=args.verbose
    )
    return 0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE")
    return key, value


def cmd_submit(args: argparse.Namespace) -> int:
    from plot_ray.submit import build_request, connect, follow_job, resolve_address, submit

    command = args.command[1:] if args.command[:1] == ["--"] else list(args.command)
    # Validate here, in a second, what the job would otherwise fail on after its upload.
    overrides = [a for a in command[1:] if "=" in a and not a.startswith("-")]
    cfg = load_config(args.config, overrides)
    request = build_request(
        args.config,
        command,
        working_dir=args.working_dir,
        env=dict(args.env or []),
        pip=args.pip,
        job_id=args.job_id,
        entrypoint_num_cpus=args.entrypoint_num_cpus,
        entrypoint_num_gpus=args.entrypoint_num_gpus,
        entrypoint_resources=dict((k, float(v)) for k, v in (args.entrypoint_resource or [])),
    )
    address = resolve_address(args.address, cfg.cluster.address)
    client = connect(address)
    job_id = submit(client, request, address)
    _print(f"submitted job {job_id} to {address}: {request.entrypoint}")
    if not args.wait:
        _print(f"  plot-ray jobs logs {job_id} --follow    plot-ray jobs stop {job_id}")
        return 0
    try:
        status, message = follow_job(client, job_id, address)
    except KeyboardInterrupt:
        _print(f"\nstopped following; job {job_id} keeps running (plot-ray jobs stop {job_id})")
        return 130
    if status == "SUCCEEDED":
        _print(f"job {job_id} SUCCEEDED")
        return 0
    # Ray's message repeats the log's tail, which was just shown: its first line is enough.
    reason = message.splitlines()[0] if message else "no message"
    print(f"plot-ray submit: job {job_id} {status}: {reason}", file=sys.stderr)
    return 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from plot_ray.submit import (
        connect,
        explained,
        follow_job,
        job_rows,
        job_status_lines,
        resolve_address,
    )

    address = resolve_address(args.address)
    client = connect(address)
    if args.action == "list":
        rows = job_rows(client, address)
        _print(f"{'job id':<52} {'status':<10} {'started':<19} {'config':<20} commit")
        for r in rows:
            _print(
                f"{r['id']:<52} {r['status']:<10} {r['started']:<19} {r['config']:<20} "
                f"{r['commit']}"
            )
        return 0
    if not args.job_id:
        raise ConfigError(f"plot-ray jobs {args.action} needs a job id (see plot-ray jobs list)")
    if args.action == "status":
        for line in job_status_lines(client, args.job_id, address):
            _print(line)
        return 0
    if args.action == "logs":
        if args.follow:
            status, message = follow_job(client, args.job_id, address)
            return 0 if status == "SUCCEEDED" else 1
        with explained(address):
            sys.stdout.write(client.get_job_logs(args.job_id))
        return 0
    with explained(address):
        stopped = client.stop_job(args.job_id)
    _print(f"job {args.job_id}: " + ("stop requested" if stopped else "had already ended"))
    return 0


# -------------------------------------------------------------------------------- parser
def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show Ray's and DeepSpeed's worker logs on the terminal (they always go to "
        "a log file in the run folder)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plot-ray",
        description="Ray-distributed preference fine-tuning of LLMs with PLOT "
        "(Preference Learning via Optimal Transport).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="validate a config file and print it resolved")
    p.add_argument("file", nargs="?", help="YAML config (omit to start from the defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("synth", help="write the deterministic synthetic preference benchmark")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every row count")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "build-model",
        help="train a byte-level BPE tokenizer on a corpus and build a tiny Llama from it",
    )
    p.add_argument("--data", required=True, help="corpus folder (e.g. from `plot-ray synth`)")
    p.add_argument("--out", required=True, help="where to save_pretrained the model")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument(
        "--warmup-steps", type=int, default=0, help="causal-LM steps on the warm-up corpus"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_build_model)

    p = sub.add_parser(
        "build-reward-model",
        help="train a tiny Bradley-Terry reward model on a benchmark's preference pairs",
    )
    p.add_argument("--data", required=True, help="benchmark folder (e.g. from `plot-ray synth`)")
    p.add_argument("--out", required=True, help="where to save_pretrained the reward model")
    p.add_argument(
        "--tokenizer-from",
        help="model folder whose tokenizer to reuse (e.g. the base model); default: train one",
    )
    p.add_argument("--vocab-size", type=int, default=4096, help="when training a tokenizer")
    p.add_argument("--steps", type=int, default=300, help="Bradley-Terry steps")
    p.add_argument("--batch-size", type=int, default=16, help="preference pairs per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_build_reward_model)

    p = sub.add_parser(
        "build-attacker",
        help="train a tiny attacker LM (for the ZeroShot and SFS attacks) on a benchmark",
    )
    p.add_argument("--data", required=True, help="benchmark folder (e.g. from `plot-ray synth`)")
    p.add_argument("--out", required=True, help="where to save_pretrained the attacker")
    p.add_argument(
        "--tokenizer-from",
        help="model folder whose tokenizer to reuse (e.g. the base model); default: train one",
    )
    p.add_argument("--vocab-size", type=int, default=4096, help="when training a tokenizer")
    p.add_argument("--steps", type=int, default=1500, help="causal-LM steps")
    p.add_argument("--batch-size", type=int, default=16, help="transcripts per step")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_build_attacker)

    p = sub.add_parser(
        "prepare",
        help="read, validate and tokenize preference corpora with Ray Data; count tokens",
    )
    p.add_argument("--config", required=True, help="YAML config (data and model sections)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    _add_verbose(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "train", help="PLOT fine-tuning with Ray Train + DeepSpeed ZeRO on the prepared data"
    )
    p.add_argument("--config", required=True, help="YAML config")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    p.add_argument("--resume", action="store_true", help="continue the run named train.run_name")
    p.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, else a local instance)"
    )
    _add_verbose(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="a Ray Tune sweep over tune.space: one Ray Train run per trial")
    p.add_argument("--config", required=True, help="YAML config with a tune section")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    p.add_argument("--resume", action="store_true", help="continue the sweep named tune.name")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "eval",
        help="evaluate models on vLLM/HF engine pools: ASR per attack, over-refusal, reward and "
        "win rates, logic accuracy, perplexity; resumable",
    )
    p.add_argument("--config", required=True, help="YAML config with an eval section")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME=PATH",
        help="a model to evaluate (repeatable; replaces eval.models): hub name, model folder, "
        "or a plot-ray train run folder",
    )
    p.add_argument(
        "--force", action="store_true", help="discard this eval.name's results and start over"
    )
    _add_verbose(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "make-pairs",
        help="on-policy preference pairs: sample k completions per problem on the engine pool, "
        "grade them (GSM8K '#### N', MATH \\boxed{}), pair correct against wrong; resumable",
    )
    p.add_argument("--config", required=True, help="YAML config with a pairs section")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    p.add_argument(
        "--force", action="store_true", help="discard this pairs.name's samples and start over"
    )
    _add_verbose(p)
    p.set_defaults(func=cmd_make_pairs)

    p = sub.add_parser(
        "demo", help="run the end-to-end pipeline on a local Ray instance with a tiny model"
    )
    p.add_argument("--out", default="runs/demo", help="output folder")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="profile",
        action="store_const",
        const="quick",
        help="DPO with and without PLOT, one seed, fewer steps and attacks (~5 min on 2 cores)",
    )
    size.add_argument(
        "--full",
        dest="profile",
        action="store_const",
        const="full",
        help="SFT, DPO, PRO, AOT +- PLOT (DPO 5 seeds, others 2), a zero-tilt control, the "
        "alpha and vanilla beta curves, cost and divergence ablations, every attack "
        "(budget 90 min)",
    )
    p.set_defaults(profile="default")  # DPO and AOT +- PLOT, 2 seeds (~15 min)
    p.add_argument("--force", action="store_true", help="start over instead of reusing stages")
    p.add_argument("--seed", type=int, default=0, help="benchmark and model-building seed")
    _add_verbose(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "submit",
        help="run prepare/train/tune/eval/make-pairs on a Ray cluster as a Ray job, following "
        "its logs",
        description="Upload the working directory and run `plot-ray SUBCOMMAND --config FILE "
        "[ARGS...]` on the cluster's head node: plot-ray submit --config FILE -- train "
        "loss.alpha=0.5. Exits 0 when the job SUCCEEDED, 1 when it FAILED or was STOPPED.",
    )
    p.add_argument("--config", required=True, help="YAML config inside the working directory")
    p.add_argument(
        "--address",
        help="job server (dashboard) URL; default: cluster.address, RAY_ADDRESS, "
        "http://127.0.0.1:8265",
    )
    wait = p.add_mutually_exclusive_group()
    wait.add_argument(
        "--follow", dest="wait", action="store_true", default=True, help="stream logs (default)"
    )
    wait.add_argument(
        "--no-wait", dest="wait", action="store_false", help="print the job id and return"
    )
    p.add_argument("--job-id", help="the job's submission id (default: plot-ray-SUB-CONFIG-TIME)")
    p.add_argument("--working-dir", default=".", help="folder uploaded with the job (default: .)")
    p.add_argument(
        "--env", action="append", type=_key_value, metavar="KEY=VALUE", help="job env (repeat)"
    )
    p.add_argument("--pip", action="append", metavar="PKG", help="pip package for the job")
    p.add_argument("--entrypoint-num-cpus", type=float, help="CPUs reserved for the job driver")
    p.add_argument("--entrypoint-num-gpus", type=float, help="GPUs reserved for the job driver")
    p.add_argument(
        "--entrypoint-resource",
        action="append",
        type=_key_value,
        metavar="NAME=AMOUNT",
        help="a custom resource the driver needs, e.g. to pin it to a node (repeat)",
    )
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- SUBCOMMAND [ARGS...]",
        help="prepare, train, tune, eval or make-pairs, and its overrides/options",
    )
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="list, inspect, follow or stop the cluster's Ray jobs")
    p.add_argument("action", choices=["list", "status", "logs", "stop"])
    p.add_argument("job_id", nargs="?", help="the job's submission id")
    p.add_argument("--address", help="job server URL; default: RAY_ADDRESS, http://127.0.0.1:8265")
    p.add_argument("--follow", action="store_true", help="logs: stream until the job ends")
    p.set_defaults(func=cmd_jobs)
    return parser


def _quiet_libraries() -> None:
    """Keep transformers' per-file progress bars ("Loading weights", "Writing model shards")
    off the terminal; plot-ray prints its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "verbose", False) and args.command in (
        "build-model",
        "build-reward-model",
        "demo",
        "train",
        "eval",
        "make-pairs",
    ):
        _quiet_libraries()
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"plot-ray: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"plot-ray {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
