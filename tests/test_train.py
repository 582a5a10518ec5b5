"""Distributed PLOT fine-tuning with a real local Ray instance, real DeepSpeed ZeRO engines on
CPU (gloo) and the tiny model: every method with and without PLOT, ZeRO-3 vs ZeRO-0 parity,
learning, fault tolerance with automatic restore, resume, final weights, and fast failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plot_ray.config import ConfigError, load_config
from plot_ray.train import CheckpointError, read_metrics, run_training

pytestmark = [pytest.mark.slow]


def train_config(prepared, model_dir, out, **overrides):
    base = {
        "data.output_dir": str(prepared),
        "data.max_length": 160,
        "data.max_prompt_length": 96,
        "model.name_or_path": str(model_dir),
        "train.output_dir": str(out),
        "train.num_workers": 2,
        "train.cpus_per_worker": 0.5,
        "train.max_steps": 2,
        "train.micro_batch_size": 2,
        "train.learning_rate": 1e-3,
        "train.warmup_steps": 0,
        "train.checkpoint_every": 100,
        "train.log_every": 1,
        "loss.plot.chunk_size": 64,
        "deepspeed.zero_stage": 2,
    }
    base.update(overrides)
    return load_config(overrides=base)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("method", ["sft", "dpo", "pro", "aot"])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_every_method_trains_with_and_without_plot(
    ray_local, prepared_dir, prepared_ranked_dir, tiny_model_dir, runs, stage, method, alpha
):
    prepared = prepared_ranked_dir if method == "pro" else prepared_dir
    cfg = train_config(
        prepared, tiny_model_dir, runs,
        **{"deepspeed.zero_stage": stage, "loss.method": method, "loss.alpha": alpha,
           "train.run_name": f"{method}-a{alpha}-z{stage}", "train.save_hf_model": False},
    )
    run = run_training(cfg)
    steps = [m["step"] for m in run.metrics]
    assert steps == [1, 2]
    last = run.last
    assert all(key in last for key in ("loss/total", "loss/vanilla", "lr", "tokens_per_s"))
    for m in run.metrics:
        assert m["loss/total"] == pytest.approx(m["loss/vanilla"] + alpha * m["loss/plot"], rel=1e-4)
    if alpha > 0:
        assert last["loss/plot"] > 0
    if method in ("dpo", "aot"):
        assert 0.0 <= last["rewards/accuracy"] <= 1.0


def test_zero3_and_zero0_give_the_same_first_step_loss(ray_local, prepared_dir, tiny_model_dir, runs):
    first = {}
    for stage in (0, 3):
        cfg = train_config(
            prepared_dir, tiny_model_dir, runs,
            **{"deepspeed.zero_stage": stage, "loss.alpha": 0.5, "train.max_steps": 1,
               "train.run_name": f"parity-z{stage}", "train.save_hf_model": False},
        )
        first[stage] = run_training(cfg).metrics[0]
    for key in ("loss/total", "loss/vanilla", "loss/plot"):
        assert first[3][key] == pytest.approx(first[0][key], rel=1e-4, abs=1e-6), key


@pytest.fixture(scope="module")
def dpo_run(ray_local, prepared_dir, tiny_model_dir, runs):
    """A few dozen DPO+PLOT steps with checkpoints, ending in consolidated HF weights."""
    cfg = train_config(
        prepared_dir, tiny_model_dir, runs,
        **{"loss.method": "dpo", "loss.alpha": 0.1, "loss.beta": 0.5, "train.max_steps": 40,
           "train.micro_batch_size": 8, "train.learning_rate": 2e-3, "train.lr_scheduler": "constant",
           "train.log_every": 5, "train.checkpoint_every": 20, "train.run_name": "dpo-learns"},
    )
    return cfg, run_training(cfg)


def test_dpo_raises_reward_accuracy_above_chance(dpo_run):
    _, run = dpo_run
    assert [m["step"] for m in run.metrics] == [5, 10, 15, 20, 25, 30, 35, 40]
    late = [m["rewards/accuracy"] for m in run.metrics[-3:]]
    assert sum(late) / len(late) > 0.7
    assert run.metrics[-1]["loss/vanilla"] < run.metrics[0]["loss/vanilla"]


def test_checkpoints_are_kept_and_tensorboard_is_written(dpo_run):
    cfg, run = dpo_run
    assert [p.name for p in run.checkpoints] == ["checkpoint_000020", "checkpoint_000040"]
    assert list((run.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["final_model"]


VLLM_SCRIPT = textwrap.dedent(
    """
    import sys
    if __name__ == "__main__":
        from vllm import LLM, SamplingParams
        llm = LLM(model=sys.argv[1], gpu_memory_utilization=0.1, max_model_len=256,
                  dtype="float32", enforce_eager=True)
        out = llm.generate(["<|bos|><|user|>\\nHello<|eos|><|assistant|>\\n"],
                           SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True))
        print("TOKENS", len(out[0].outputs[0].token_ids))
    """
)


@pytest.mark.vllm
def test_final_weights_load_in_transformers_and_vllm(dpo_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, run = dpo_run
    final = run.final_model
    assert (final / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    ids = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**ids, max_new_tokens=4, do_sample=False).shape[1] > ids["input_ids"].shape[1]

    script = tmp_path / "v.py"
    script.write_text(VLLM_SCRIPT)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    out = subprocess.run([sys.executable, str(script), str(final)], capture_output=True, text=True,
                         timeout=600, env=env)
    assert "TOKENS 5" in out.stdout, out.stderr[-3000:]


def test_worker_crash_resumes_from_checkpoint_with_every_step_once(
    ray_local, prepared_dir, tiny_model_dir, runs
):
    cfg = train_config(
        prepared_dir, tiny_model_dir, runs,
        **{"loss.alpha": 0.5, "train.max_steps": 8, "train.checkpoint_every": 3,
           "train.max_failures": 1, "train.run_name": "crash", "train.save_hf_model": False},
    )
    run = run_training(cfg, fail_at_step=5)
    assert (run.run_dir / ".failed_once_rank1").exists()  # the crash did happen
    assert [m["step"] for m in run.metrics] == list(range(1, 9))
    # Only registered checkpoints stay on disk (Ray leaves in-flight ones behind on a crash).
    on_disk = sorted(p.name for p in (runs / "crash").glob("checkpoint_0*"))
    assert on_disk == sorted(p.name for p in run.checkpoints)


def test_resume_continues_a_stopped_run(ray_local, prepared_dir, tiny_model_dir, runs):
    common = {"loss.alpha": 0.5, "train.checkpoint_every": 2, "train.run_name": "resumable",
              "train.save_hf_model": False}
    first = run_training(train_config(prepared_dir, tiny_model_dir, runs,
                                      **{**common, "train.max_steps": 4}))
    assert first.last["step"] == 4
    cfg = train_config(prepared_dir, tiny_model_dir, runs, **{**common, "train.max_steps": 6})
    with pytest.raises(CheckpointError, match="pass --resume"):
        run_training(cfg)
    run = run_training(cfg, resume=True)
    assert [m["step"] for m in run.metrics] == [1, 2, 3, 4, 5, 6]


def test_resume_of_an_empty_or_corrupt_run_is_a_clear_error(
    ray_local, prepared_dir, tiny_model_dir, runs
):
    cfg = train_config(prepared_dir, tiny_model_dir, runs, **{"train.run_name": "never-ran"})
    with pytest.raises(CheckpointError, match="there is no run"):
        run_training(cfg, resume=True)
    broken = runs / "broken"
    (broken / "checkpoint_000002").mkdir(parents=True)
    (broken / "checkpoint_manager_snapshot.json").write_text("{}")
    (broken / "checkpoint_000002" / "plot_ray_state.json").write_text("{not json")
    cfg = train_config(prepared_dir, tiny_model_dir, runs, **{"train.run_name": "broken"})
    with pytest.raises(CheckpointError, match="incomplete or corrupt"):
        run_training(cfg, resume=True)


def test_too_many_workers_fail_fast(ray_local, prepared_dir, tiny_model_dir, runs):
    cfg = train_config(prepared_dir, tiny_model_dir, runs, **{"train.num_workers": 4})
    with pytest.raises(ValueError, match=r"needs 2 CPUs \+ 0.25 for Ray Data's reads but the Ray cluster has 2"):
        run_training(cfg)


def test_missing_artifact_fails_fast(ray_local, tiny_model_dir, runs, tmp_path):
    cfg = train_config(tmp_path / "nothing", tiny_model_dir, runs)
    with pytest.raises(FileNotFoundError, match="run `plot-ray prepare"):
        run_training(cfg)


def test_tokenizer_mismatch_fails_fast(ray_local, prepared_dir, tiny_model_dir, runs, tmp_path):
    from plot_ray.models import TokenizerMismatchError
    from plot_ray.models.tiny import build_tiny_model, build_tokenizer

    other = tmp_path / "other-model"
    tok = build_tokenizer(["some other corpus entirely"] * 100, vocab_size=300)
    build_tiny_model(tok).save_pretrained(other)
    tok.save_pretrained(other)
    cfg = train_config(prepared_dir, other, runs)
    with pytest.raises(TokenizerMismatchError):
        run_training(cfg)


def test_precomputed_reference_logps_match_the_model_and_train(
    ray_local, prepared_dir, tiny_model_dir, runs
):
    """``loss.reference=precomputed``: one Ray Data pass scores every response with the frozen
    reference; the scores equal a direct computation, and DPO trains on them."""
    import torch

    from plot_ray.data import collate_preference_batch, load_tokenized_dataset
    from plot_ray.losses import sequence_logprobs
    from plot_ray.models import load_causal_lm, load_tokenizer
    from plot_ray.train.reference import add_reference_logps

    cfg = train_config(
        prepared_dir, tiny_model_dir, runs,
        **{"loss.reference": "precomputed", "loss.alpha": 0.5, "loss.plot.target": "global",
           "train.run_name": "precomputed", "train.save_hf_model": False},
    )
    scored = add_reference_logps(cfg, load_tokenized_dataset(prepared_dir), runs / "ref-logps")
    rows = scored.take(3)
    pad_id = load_tokenizer(str(tiny_model_dir)).pad_token_id
    batch = collate_preference_batch(rows, pad_id=pad_id, num_responses=None, max_length=160)
    model = load_causal_lm(str(tiny_model_dir)).eval()
    with torch.no_grad():
        direct = sequence_logprobs(model(input_ids=batch["input_ids"],
                                         attention_mask=batch["attention_mask"]).logits,
                                   batch["labels"]).sums.view(-1, 3).T
    stored = torch.tensor([list(r["ref_logps"]) for r in rows])
    torch.testing.assert_close(stored, direct, rtol=1e-4, atol=1e-3)

    run = run_training(cfg)
    assert [m["step"] for m in run.metrics] == [1, 2]
    assert run.metrics[0]["loss/vanilla"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference


def test_non_finite_losses_are_skipped_counted_and_bounded(ray_local, prepared_dir, tiny_model_dir, runs):
    cfg = train_config(prepared_dir, tiny_model_dir, runs,
                       **{"train.max_steps": 3, "train.max_nan_skips": 1, "train.run_name": "nan-once",
                          "train.save_hf_model": False})
    run = run_training(cfg, nan_at_steps=(2,))
    assert [m["nan_skips"] for m in run.metrics] == [0, 1, 1]  # counted and reported, not hidden
    cfg = train_config(prepared_dir, tiny_model_dir, runs,
                       **{"train.max_steps": 4, "train.max_nan_skips": 1, "train.run_name": "nan-twice",
                          "train.save_hf_model": False})
    with pytest.raises(Exception, match=r"2 non-finite losses \(train.max_nan_skips=1\)"):
        run_training(cfg, nan_at_steps=(2, 3))
