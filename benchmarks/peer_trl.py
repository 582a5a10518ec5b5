"""Benchmark ``peer_trl``: DPO training throughput of plot-ray against TRL's ``DPOTrainer``.

What a user would otherwise run for DPO on one machine is TRL: one process, every core. This
compares, in one run and on the same 2-core CPU machine:

- **trl**: ``trl.DPOTrainer`` in this process, ``torch.set_num_threads(2)``;
- **plot-ray 1w**: ``plot-ray train`` with 1 Ray Train worker holding both cores
  (``train.threads_per_worker=2``);
- **plot-ray 2w**: 2 workers with one thread each, each with half the pairs of a step.

Same work on both sides: the same tiny Llama (``_train_common.prepare_workspace``: hidden 256,
4 layers, vocabulary 4096), fp32, CPU; the same preference pairs in the same order (TRL reads the
synthetic jsonl rows as conversations, in ``data.sources`` order, with the tokenizer's chat
template, and a sequential sampler, so that its step k sees the rows of plot-ray's single
worker's step k; the benchmark checks that TRL's tokenized prompt, chosen and rejected ids equal
plot-ray's prepared ids row for row, and stops if one differs); the same pairs per optimizer
step (``--pairs``, no gradient accumulation), incomplete last batches dropped on both sides;
the same length limit (TRL's ``max_length`` = ``data.max_length`` = 256; TRL 1.16 has no
``max_prompt_length``, and no row of this corpus reaches either limit, which the id check
confirms); dynamic padding to the longest sequence of the batch on both sides; DPO (sigmoid,
beta 0.1, no label smoothing) with a reference model that runs a forward pass every step on
both sides (TRL ``precompute_ref_log_probs=False``, plot-ray ``loss.reference=model``); AdamW
(torch's, betas 0.9/0.95, eps 1e-8, no weight decay, lr 1e-4, cosine schedule), gradient
clipping at 1.0, no gradient checkpointing, dropout off; the same number of steps. plot-ray
runs with its defaults otherwise (DeepSpeed ZeRO-2, ``--zero-stage`` to change it), TRL with
``use_cpu=True``, ``bf16=False``, ``report_to=[]``, ``dataloader_num_workers=0``. Both log
every ``--log-every`` steps.

Tokens are response tokens of the chosen and the rejected response (eos included; prompt and
padding excluded), counted by this benchmark from the prepared data. plot-ray's
``tokens_per_s`` counts the same thing (label positions of its collate, checked here against the
count from the data on every row); TRL's step k processes the rows counted for step k (checked:
TRL's own count of input tokens after the run equals the one from the data).

Time: steady state only. Steps are grouped into windows of ``--log-every`` steps, and the first
window (model set-up, first batches, allocator warm-up) is left out: for plot-ray the
``tokens_per_s`` of every logged window but the first (each window's clock starts when the
previous one was logged, so the time of logging and of ``ray.train.report()`` is inside), for
TRL the same windows timed from a callback's step-end timestamps (its logging inside likewise).
Each system's figure is the median over its windows, then over ``--repeats`` repetitions run
interleaved (trl, 1w, 2w, then the reverse order). Ray's start, data preparation, TRL's
tokenization and every trainer's set-up are outside the timed windows. The local Ray instance
stays up, idle, while TRL runs, as it does between plot-ray's runs.

Ray Train runs with the environment a user's ``plot-ray train`` has:
``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` is left at Ray's default (unless you exported it), so
whatever a ``ray.train.report()`` costs a user is in the figures.

    python benchmarks/peer_trl.py [--steps 40] [--pairs 8] [--log-every 10] [--repeats 2]

Last line: {"benchmark": "peer_trl", "ratio_1w_over_trl": ..., "ratio_2w_over_trl": ...}
(plot-ray tokens/s over TRL's). Target: both >= 1.0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _train_common import (
    health_check_setting,
    median_after_warmup,
    prepare_workspace,
    prepared_rows,
    response_tokens,
    step_tokens,
    train_metrics,
)

# Shared by both systems; the docstring lists them.
BETA = 0.1
LEARNING_RATE = 1e-4  # what _train_common.train_metrics gives plot-ray


def trl_rows(ws: dict) -> list[dict]:
    """The synthetic pairs as TRL's conversational rows, in ``data.sources`` order (the order
    ``plot-ray prepare`` wrote them, which :func:`check_same_ids` confirms)."""
    rows = []
    for source in ws["overrides"]["data.sources"]:
        with open(source["path"], encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                rows.append(
                    {
                        "prompt": [{"role": "user", "content": r["prompt"]}],
                        "chosen": [{"role": "assistant", "content": r["chosen"]}],
                        "rejected": [{"role": "assistant", "content": r["rejected"]}],
                    }
                )
    return rows


def check_same_ids(trl_dataset, prepared: list[dict]) -> None:
    """TRL's tokenized rows must be plot-ray's prepared rows, in the same order."""
    if len(trl_dataset) != len(prepared):
        raise SystemExit(f"TRL kept {len(trl_dataset)} rows, plot-ray prepared {len(prepared)}")
    for i, (t, p) in enumerate(zip(trl_dataset, prepared, strict=True)):
        if (
            t["prompt_ids"] != p["prompt_ids"]
            or t["chosen_ids"] != p["response_ids"][0]
            or t["rejected_ids"] != p["response_ids"][1]
        ):
            raise SystemExit(
                f"row {i}: TRL's token ids differ from plot-ray's prepared ids, so the two would "
                f"not do the same work:\n  TRL      {t['prompt_ids']} | {t['chosen_ids'][:12]}...\n"
                f"  plot-ray {p['prompt_ids']} | {p['response_ids'][0][:12]}..."
            )


def check_plot_ray_counts(prepared: list[dict], pad_id: int, pairs: int, max_length: int) -> None:
    """plot-ray's tokens_per_s counts label positions of its collate: the same tokens as
    :func:`response_tokens` counts from the data?"""
    from plot_ray.data import collate_preference_batch

    for start in range(0, len(prepared), pairs):
        batch = prepared[start : start + pairs]
        labels = collate_preference_batch(batch, pad_id, 2, max_length)["labels"]
        counted = int((labels != -100).sum())
        expected = sum(response_tokens(r, max_length) for r in batch)
        if counted != expected:
            raise SystemExit(
                f"rows {start}..: plot-ray's collate labels {counted} response "
                f"tokens, the data holds {expected}"
            )


def input_tokens_seen(prepared: list[dict], pairs: int, steps: int, max_length: int) -> int:
    """Prompt + response tokens of both sequences of every pair TRL's ``steps`` steps read
    (sequential order, incomplete last batch dropped): what TRL logs as ``num_tokens``."""
    per_epoch = len(prepared) // pairs
    total = 0
    for k in range(steps):
        for r in prepared[(k % per_epoch) * pairs : (k % per_epoch + 1) * pairs]:
            total += sum(
                min(len(r["prompt_ids"]) + len(x), max_length) for x in r["response_ids"][:2]
            )
    return total


def window_rates(ends: list[float], tokens: list[int], every: int) -> list[float]:
    """tokens/s of each window of ``every`` steps but the first, from step-end timestamps."""
    rates = []
    for k in range(1, len(ends) // every):
        seconds = ends[(k + 1) * every - 1] - ends[k * every - 1]
        rates.append(sum(tokens[k * every : (k + 1) * every]) / seconds)
    return rates


def run_trl(
    ws: dict, rows: list[dict], prepared: list[dict], tokens: list[int], args, name: str
) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    torch.set_num_threads(args.trl_threads)
    model_dir = ws["overrides"]["model.name_or_path"]
    max_length = ws["overrides"]["data.max_length"]
    config = DPOConfig(
        output_dir=str(ws["root"] / "trl" / name),
        use_cpu=True,
        bf16=False,
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=args.log_every,
        seed=0,
        per_device_train_batch_size=args.pairs,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        train_sampling_strategy="sequential",
        dataloader_drop_last=True,
        max_length=max_length,
        gradient_checkpointing=False,
        loss_type=["sigmoid"],
        beta=BETA,
        label_smoothing=0.0,
        precompute_ref_log_probs=False,
        optim="adamw_torch",
        learning_rate=LEARNING_RATE,
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="cosine",
        warmup_steps=0,
    )
    clock = StepClock()
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)  # its per-log dict printing would bury the results
    check_same_ids(trainer.train_dataset, prepared)
    trainer.train()
    seen = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h][-1]
    expected = input_tokens_seen(prepared, args.pairs, args.steps, max_length)
    if int(seen) != expected:
        raise SystemExit(
            f"TRL read {int(seen)} input tokens, not the {expected} of the rows "
            "counted for its steps: its batches are not the ones counted"
        )
    return statistics.median(window_rates(clock.ends, tokens, args.log_every))


def run_plot_ray(ws: dict, workers: int, args, name: str) -> float:
    per_worker = args.pairs // workers
    metrics = train_metrics(
        ws,
        name,
        **{
            "train.max_steps": args.steps,
            "train.log_every": args.log_every,
            "train.num_workers": workers,
            "train.micro_batch_size": per_worker,
            "train.threads_per_worker": 2 // workers,
            "train.cpus_per_worker": 1.5 / workers,
            "loss.method": "dpo",
            "loss.alpha": 0.0,
            "loss.beta": BETA,
            "loss.reference": "model",
            "deepspeed.zero_stage": args.zero_stage,
            "deepspeed.precision": "fp32",
            "model.dtype": "float32",
            "train.lr_scheduler": "cosine",
        },
    )
    return median_after_warmup(metrics, "tokens_per_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=8, help="pairs per optimizer step (even)")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--zero-stage", type=int, default=2, choices=(0, 1, 2, 3))
    parser.add_argument("--trl-threads", type=int, default=2)
    args = parser.parse_args()
    if args.pairs % 2 or args.steps % args.log_every or args.steps < 2 * args.log_every:
        parser.error(
            "--pairs must be even and --steps a multiple of --log-every, at least 2 windows"
        )

    import trl
    from transformers import AutoTokenizer

    ws = prepare_workspace(ray_default_health_check=True)
    max_length = ws["overrides"]["data.max_length"]
    prepared = prepared_rows(ws)
    tokenizer = AutoTokenizer.from_pretrained(ws["overrides"]["model.name_or_path"])
    check_plot_ray_counts(prepared, tokenizer.pad_token_id, args.pairs, max_length)
    tokens = step_tokens(prepared, args.pairs, args.steps, max_length)
    rows = trl_rows(ws)
    print(
        f"{len(prepared)} pairs, {args.pairs} per step, {args.steps} steps "
        f"({sum(tokens):,} response tokens); TRL {trl.__version__}; {health_check_setting()}"
    )

    tps: dict[str, list[float]] = {"trl": [], "1w": [], "2w": []}
    for rep in range(args.repeats):
        order = ("trl", "1w", "2w") if rep % 2 == 0 else ("2w", "1w", "trl")
        for system in order:
            if system == "trl":
                value = run_trl(ws, rows, prepared, tokens, args, f"trl-r{rep}")
            else:
                value = run_plot_ray(ws, int(system[0]), args, f"peer-{system}-r{rep}")
            tps[system].append(value)
            print(f"repeat {rep}: {system:>3}: {value:,.0f} response tokens/s")

    med = {k: statistics.median(v) for k, v in tps.items()}
    r1, r2 = med["1w"] / med["trl"], med["2w"] / med["trl"]
    print(
        f"plot-ray 1 worker x 2 threads over TRL: {r1:.2f}x; 2 workers x 1 thread over TRL: "
        f"{r2:.2f}x (target >= 1.0 both)"
    )
    print(
        json.dumps(
            {
                "benchmark": "peer_trl",
                "ratio_1w_over_trl": round(r1, 3),
                "ratio_2w_over_trl": round(r2, 3),
                "tokens_per_s_trl": round(med["trl"], 1),
                "tokens_per_s_1w": round(med["1w"], 1),
                "tokens_per_s_2w": round(med["2w"], 1),
                "pairs_per_step": args.pairs,
                "steps": args.steps,
                "zero_stage": args.zero_stage,
                "trl_version": trl.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
