"""The gradient attacks (GCG, PEZ, GBDA, UAT) on the warmed-up tiny model: each lowers the
target-string loss, emits only allowed tokens that survive decoding and re-encoding in the
prompt, records its trace and snapshots, and is deterministic given its seed.

The model is loaded once per module; every attack runs on one synthetic behaviour with
small settings (about 6 s for the whole file on 2 shared cores, once the session fixtures exist).
"""

from __future__ import annotations

import json

import pytest
import torch

from plot_ray.config import ConfigError, load_config
from plot_ray.eval.attacks import ATTACKS, AttackResult, Target, get_attack
from plot_ray.eval.attacks.gradient import (
    GBDAConfig,
    GCGConfig,
    GradientAttackConfig,
    PEZConfig,
    TargetLoss,
    UATConfig,
    allowed_token_masks,
    gcg,
)
from plot_ray.eval.engines import chat_prompts
from plot_ray.eval.judges import RefusalJudge
from plot_ray.eval.judges.synthetic import SyntheticRefusalJudge

# Every attack must beat its initial test case by this many nats per target token. Across 200
# random valid 20-token suffixes the loss of a behaviour varies with a standard deviation of
# 0.31-0.36 nats (the session's base model on benchmark version 2, three behaviours measured),
# so 0.6 is about two standard deviations: more than luck in picking tokens gives. The tests
# attack the third behaviour, whose target the base model does not already say (mean loss 4.4
# nats; the first two: 1.1): with these settings the attacks lowered it by 0.91 (PEZ, GBDA),
# 1.46 (UAT) and 1.83 (GCG) nats; on the first behaviour PEZ managed only 0.26.
MARGIN = 0.6
BEHAVIOR_INDEX = 2
INIT = " ".join(["!"] * 10)  # HarmBench's "! ! ... !" halved: 20 tokens with this tokenizer

SETTINGS = {
    "gcg": GCGConfig(
        num_steps=12, search_width=32, topk=32, adv_string_init=INIT, snapshot_every=4
    ),
    "uat": UATConfig(num_steps=8, adv_string_init=INIT, snapshot_every=4),
    "pez": PEZConfig(num_test_cases=2, num_optim_tokens=20, num_steps=20, snapshot_every=5),
    "gbda": GBDAConfig(num_test_cases=2, num_optim_tokens=20, num_steps=20, snapshot_every=5),
}


def run_gradient_attack(name, model, tok, behavior, target, settings=None, seed=0):
    """Attack ``name`` from the registry on one behaviour, as the evaluation's actors run it
    (with the synthetic benchmark's refusal judge for the early stop)."""
    spec = get_attack(name)
    cfg = settings if isinstance(settings, spec.config) else spec.make_config(settings)
    row = {"behavior_id": "b", "behavior": behavior, "target": target}
    return spec.run(row, cfg, Target(model, tok, seed, SyntheticRefusalJudge()))


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    from plot_ray.models import load_causal_lm, load_tokenizer

    # One thread: on 2 cores shared with other test runs, two intra-op threads made the
    # attacks' many small forward passes 20x slower (1.2 s vs 58 ms per GBDA step).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_causal_lm(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def behavior(synth_dir):
    with (synth_dir / "eval" / "behaviors.jsonl").open() as fh:
        return json.loads(fh.readlines()[BEHAVIOR_INDEX])


@pytest.fixture(scope="module")
def target_loss(lm, behavior):
    model, tok = lm
    return TargetLoss(model, tok, behavior["behavior"], behavior["target"])


@pytest.fixture(scope="module")
def results(lm, behavior):
    """Each attack's results (a list) with the module's settings, run once."""
    model, tok = lm
    return {
        name: run_gradient_attack(
            name, model, tok, behavior["behavior"], behavior["target"], cfg, seed=0
        )
        for name, cfg in SETTINGS.items()
    }


def _suffix_ids(tl: TargetLoss, result: AttackResult) -> torch.Tensor:
    assert result.test_case == tl.behavior + " " + result.suffix
    return tl.encode_suffix(result.suffix)


# ------------------------------------------------------------------------- TargetLoss
def test_target_loss_equals_a_direct_forward_cross_entropy(lm, target_loss):
    model, tok = lm
    tl = target_loss
    adv = tl.encode_suffix("! ! !")
    ids = tl.before_ids + adv.tolist() + tl.after_ids + tl.target_ids
    labels = [-100] * (len(ids) - len(tl.target_ids)) + tl.target_ids
    with torch.no_grad():
        # transformers shifts the labels itself: the mean CE over the target tokens.
        direct = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    t = len(tl.target_ids)
    # By hand: -log softmax at each target position, averaged.
    logp = logits[-t - 1 : -1].log_softmax(-1)
    by_hand = -logp[torch.arange(t), torch.tensor(tl.target_ids)].mean()
    got = tl.loss_ids(adv[None])
    assert got.shape == (1,)
    assert float(got[0]) == pytest.approx(float(direct), abs=1e-5)
    assert float(got[0]) == pytest.approx(float(by_hand), abs=1e-5)
    # Soft embeddings that are exactly one-hot give the same loss, with gradients.
    one_hot = torch.nn.functional.one_hot(adv, tl.embeddings.shape[0]).float().requires_grad_()
    soft = tl.loss_embeds((one_hot @ tl.embeddings)[None])
    assert float(soft[0].detach()) == pytest.approx(float(direct), abs=1e-5)
    (grad,) = torch.autograd.grad(soft.sum(), one_hot)
    assert grad.shape == one_hot.shape and grad.abs().sum() > 0


def test_target_loss_lays_out_the_chat_template_around_the_suffix(lm, behavior, target_loss):
    _, tok = lm
    tl = target_loss
    adv = tl.encode_suffix("! ! !")
    assert tl.test_case(adv) == behavior["behavior"] + " ! ! !"
    prompt = chat_prompts(tok, [tl.test_case(adv)])[0]
    # The tiny template: <|bos|><|user|>\n{message}<|eos|><|assistant|>\n, then the target.
    assert prompt == f"<|bos|><|user|>\n{behavior['behavior']} ! ! !<|eos|><|assistant|>\n"
    assert tok(prompt, add_special_tokens=False)["input_ids"] == tl.prompt_ids(adv)
    assert tok.decode(tl.target_ids) == behavior["target"]


def test_allowed_tokens_are_printable_non_special_and_re_encode(lm):
    _, tok = lm
    allowed, first = allowed_token_masks(tok, len(tok) + 8)
    assert not allowed[list(tok.all_special_ids)].any()
    assert not allowed[len(tok) :].any()  # embedding rows beyond the vocabulary
    assert bool(allowed[tok.convert_tokens_to_ids("!")])
    assert not bool(first[tok.convert_tokens_to_ids("!")])  # "!" cannot open the suffix
    assert bool(first[tok.convert_tokens_to_ids("Ġ")])  # " " can
    assert (first & ~allowed).sum() == 0
    assert 0 < int(first.sum()) < int(allowed.sum()) < len(tok)


# ------------------------------------------------------------------------ every attack
@pytest.mark.parametrize("name", list(SETTINGS))
def test_attack_lowers_the_target_loss(name, results):
    for r in results[name]:
        assert r.loss <= r.initial_loss - MARGIN, (name, r.initial_loss, r.loss)
        assert r.loss == pytest.approx(min([r.initial_loss, *r.losses]))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_attack_records_its_trace_and_snapshots(name, results, target_loss):
    cfg = SETTINGS[name]
    want_results = getattr(cfg, "num_test_cases", 1)
    assert len(results[name]) == want_results
    for r in results[name]:
        assert r.stop_reason == "num_steps" and r.steps == cfg.num_steps
        assert len(r.losses) == r.steps
        every = cfg.snapshot_every
        assert sorted(r.snapshots) == sorted({0, *range(every, r.steps + 1, every), r.steps})
        assert r.snapshots[r.steps] == r.test_case
        # Step 0 is the initial test case: its loss is initial_loss.
        head = target_loss.behavior + " "
        assert r.snapshots[0].startswith(head)
        start = target_loss.encode_suffix(r.snapshots[0][len(head) :])
        assert float(target_loss.loss_ids(start[None])[0]) == pytest.approx(
            r.initial_loss, abs=1e-4
        )


@pytest.mark.parametrize("name", list(SETTINGS))
def test_attack_emits_allowed_tokens_that_re_encode_in_the_prompt(name, results, lm, target_loss):
    _, tok = lm
    tl = target_loss
    special = set(tok.all_special_ids)
    for r in results[name]:
        adv = _suffix_ids(tl, r)
        for i, t in enumerate(adv.tolist()):
            text = tok.decode([t])
            assert t not in special and text.isascii() and text.isprintable(), (name, text)
            assert tok(text, add_special_tokens=False)["input_ids"] == [t]
            assert i > 0 or text.startswith(" ")
        # The engine tokenizes the whole chat prompt: it must read the optimised ids.
        prompt = chat_prompts(tok, [r.test_case])[0]
        assert tok(prompt, add_special_tokens=False)["input_ids"] == tl.prompt_ids(adv)
        if name in ("pez", "gbda"):
            assert len(adv) == SETTINGS[name].num_optim_tokens
        # The reported loss is the loss of exactly this test case.
        assert float(tl.loss_ids(adv[None])[0]) == pytest.approx(r.loss, abs=1e-4)


@pytest.mark.parametrize("name", ["gcg", "uat", "pez"])
def test_attack_is_deterministic_a_shorter_run_repeats_the_first_steps(name, results, lm, behavior):
    """These attacks do not look ahead, so a run of k steps with the same seed must repeat the
    long run's first k losses and its snapshot at step k exactly."""
    model, tok = lm
    k = SETTINGS[name].snapshot_every
    cfg = type(SETTINGS[name])(**{**SETTINGS[name].__dict__, "num_steps": k})
    short = run_gradient_attack(name, model, tok, behavior["behavior"], behavior["target"], cfg)
    for s, r in zip(short, results[name], strict=True):
        assert s.losses == r.losses[:k]
        assert s.test_case == r.snapshots[k]


def test_gbda_is_deterministic_given_the_seed_and_varies_with_it(results, lm, behavior):
    model, tok = lm
    cfg = SETTINGS["gbda"]
    again = run_gradient_attack("gbda", model, tok, behavior["behavior"], behavior["target"], cfg)
    assert [r.losses for r in again] == [r.losses for r in results["gbda"]]
    assert [r.test_case for r in again] == [r.test_case for r in results["gbda"]]
    other = run_gradient_attack(
        "gbda", model, tok, behavior["behavior"], behavior["target"], cfg, seed=1
    )
    assert [r.test_case for r in other] != [r.test_case for r in results["gbda"]]


def test_pez_and_gbda_test_cases_differ_across_the_batch(results):
    for name in ("pez", "gbda"):
        cases = [r.test_case for r in results[name]]
        assert len(set(cases)) == len(cases)


# ---------------------------------------------------------------------- GCG early stop
def test_gcg_stops_early_when_the_loss_is_low_and_the_completion_complies(lm, behavior):
    model, tok = lm
    cfg = GCGConfig(
        num_steps=10,
        search_width=16,
        topk=16,
        adv_string_init=INIT,
        eval_steps=2,
        early_stop_loss=1e9,  # always met: the refusal check decides
        max_new_tokens_check=16,
    )
    r = run_gradient_attack("gcg", model, tok, behavior["behavior"], behavior["target"], cfg)[0]
    assert (r.steps, r.stop_reason, len(r.losses)) == (2, "early_stop", 2)
    # The completion it checked, redone by hand: greedy, 16 tokens, not a refusal.
    ids = tok(chat_prompts(tok, [r.test_case])[0], add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    completion = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert not SyntheticRefusalJudge().is_refusal(completion)

    # Count that very opening as a refusal: the attack must go on past step 2.
    strict = RefusalJudge(prefixes=(completion.split()[0].lower(),))
    assert strict.is_refusal(completion)
    go_on = gcg(
        model,
        tok,
        behavior["behavior"],
        behavior["target"],
        GCGConfig(**{**cfg.__dict__, "num_steps": 4}),
        refusal=strict,
    )
    assert go_on.steps > 2
    assert go_on.losses[:2] == r.losses


# ---------------------------------------------------------------------- configs, errors
def test_configs_reject_bad_values_and_unknown_keys_by_name():
    with pytest.raises(ValueError, match=r"GCGConfig\nsearch_width\n  Input should be greater"):
        GCGConfig(search_width=0)
    with pytest.raises(ValueError, match=r"GBDAConfig\nnoise_scale"):
        GBDAConfig(noise_scale=-1)
    with pytest.raises(
        ConfigError, match=r"eval.attack_params.gcg.topK: unknown setting; allowed: num_steps"
    ):
        load_config(overrides={"eval.attack_params": {"gcg": {"topK": 3}}})
    with pytest.raises(ValueError, match="unknown attack 'autodan'"):
        get_attack("autodan")
    assert get_attack("pez").make_config({"lr": 0.5}).lr == 0.5
    gradient = {n for n, s in ATTACKS.items() if issubclass(s.config, GradientAttackConfig)}
    assert gradient == {"gcg", "pez", "gbda", "uat"}


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (GCGConfig, "num_steps"),
        (GCGConfig, "eval_steps"),
        (UATConfig, "max_new_tokens_check"),
        (UATConfig, "num_candidates"),
        (PEZConfig, "batch_size"),
        (PEZConfig, "num_optim_tokens"),
        (GBDAConfig, "snapshot_every"),
        (GBDAConfig, "num_test_cases"),
        (GBDAConfig, "tau_end"),
    ],
)
def test_shared_and_own_settings_are_checked_under_the_attacks_name(cls, field):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\n{field}\n  Input should be greater"):
        cls(**{field: 0})


def test_each_attack_keeps_its_own_defaults_for_shared_settings():
    assert (GCGConfig().eval_steps, UATConfig().eval_steps) == (10, 2)
    assert (PEZConfig().lr, GBDAConfig().lr) == (0.05, 0.2)
    assert (GCGConfig().num_steps, UATConfig().num_steps, PEZConfig().num_steps) == (100, 50, 50)
    assert UATConfig().adv_string_init == GCGConfig().adv_string_init == " ".join(["!"] * 20)


def test_an_init_string_that_merges_with_its_neighbours_is_rejected(target_loss):
    with pytest.raises(ValueError, match="adv_string_init"):
        target_loss.encode_suffix("ok<|eos|>")  # a special token inside the suffix


def test_attacks_leave_the_models_parameters_as_they_were(lm, behavior):
    model, tok = lm
    model.train()
    try:
        run_gradient_attack(
            "gcg",
            model,
            tok,
            behavior["behavior"],
            behavior["target"],
            {"num_steps": 1, "search_width": 4, "topk": 4, "adv_string_init": "! !"},
        )
        assert model.training
        assert all(p.requires_grad and p.grad is None for p in model.parameters())
    finally:
        model.eval()
