"""The `paper` scale: the authors' likely recipe (EasyR1 fork Raven-July/EasyR1_Medical), pinned value by value, and run
for a few steps on CPU with the tiny base substituted for Qwen2.5-VL-3B."""
import json
import pytest
from vrft_aug.pipeline import resolve_config, stage_rewards, stage_prompt, run, prompt_fn_for
from vrft_aug.data import PAPER_MEDMNIST, synthmed

FORK_SYSTEM = ("You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
               "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}.")


def test_paper_scale_pins_the_forks_recipe():
    cfg = resolve_config("vrft", "paper")
    assert (cfg.scale, cfg.model, cfg.lora, cfg.bf16, cfg.use_cpu) == ("paper", "Qwen/Qwen2.5-VL-3B-Instruct", False, True, False)
    assert cfg.dataset in PAPER_MEDMNIST and (cfg.image_size, cfg.medmnist_size, cfg.n_train, cfg.n_test) == (224, 224, 256, 0)
    assert (cfg.protocol, cfg.system_prompt) == ("boxed", FORK_SYSTEM)
    assert cfg.reward_weights == {"accuracy": 0.9, "mfrs": 0.9, "format": 0.1}
    assert cfg.eval_max_new_tokens == 2048
    [st] = cfg.stages                                   # no warm start: the real model is instruction-tuned
    got = {k: getattr(st, k) for k in ("kind", "steps", "learning_rate", "weight_decay", "num_generations", "temperature",
                                       "batch_size", "gradient_accumulation_steps", "max_completion_length", "beta",
                                       "loss_type", "imitation_coef")}
    assert got == dict(kind="grpo", steps=60, learning_rate=1e-6, weight_decay=1e-2, num_generations=5, temperature=1.0,
                       batch_size=40, gradient_accumulation_steps=8, max_completion_length=2048, beta=1e-2,
                       loss_type="dapo", imitation_coef=0.0)
    assert stage_rewards(cfg, st) == {"accuracy": {"weight": 0.9, "kwargs": {"protocol": "boxed"}},
                                      "format": {"weight": 0.1, "kwargs": {"protocol": "boxed"}}}
    # grading data: the plain preset keeps accuracy (exact grade); the paper recitation presets switch to the ordinal reward
    g = resolve_config("vrft", "paper", {"dataset": "retinamnist"})
    assert set(stage_rewards(g, g.stages[0])) == {"accuracy", "format"}
    neg = resolve_config("vrft+recite-neg-paper", "paper", {"dataset": "retinamnist"})
    assert stage_rewards(neg, neg.stages[0]) == {
        "format": {"weight": 0.1, "kwargs": {"protocol": "boxed"}},
        "recitation": {"weight": -2.0, "kwargs": {"metric": "nltk_bleu", "reference": "answered", "protocol": "boxed"}},
        "mfrs": {"weight": 0.9, "kwargs": {"protocol": "boxed"}}}
    # the prompt the model sees: the fork's system message, the boxed instruction, no <answer> tags
    msgs, _ = prompt_fn_for(cfg, stage_prompt(cfg, st))(synthmed("cells", "test", 1)[0])
    assert msgs[0]["role"] == "system" and msgs[0]["content"][0]["text"] == FORK_SYSTEM
    assert "\\boxed{}" in msgs[-1]["content"][1]["text"] and "<answer>" not in msgs[-1]["content"][1]["text"]


def test_paper_scale_rejects_bad_fields():
    with pytest.raises(ValueError, match="protocol='json'"): resolve_config("vrft", "paper", {"protocol": "json"})
    with pytest.raises(ValueError, match="reward_weights.acc"): resolve_config("vrft", "paper", {"reward_weights": {"acc": 1}})
    with pytest.raises(ValueError, match="scale='huge'"): resolve_config("vrft", "huge")


def test_paper_scale_runs_with_the_tiny_base(tmp_path):
    "The whole paper recipe, shrunk: boxed prompts and rewards, 0.9/0.1 weights, G=5, weight decay, accumulation."
    cfg = resolve_config("vrft", "paper", {
        "model": "tiny-base", "use_cpu": True, "bf16": False, "dataset": "synthmed-cells", "image_size": 56,
        "n_train": 10, "n_test": 4, "output_dir": str(tmp_path), "eval_max_new_tokens": 24, "eval_batch_size": 4,
        "stages.0.steps": 2, "stages.0.batch_size": 10, "stages.0.gradient_accumulation_steps": 2,
        "stages.0.max_completion_length": 24, "stages.0.use_vllm": False})
    from vrft_aug.pipeline import _common_args
    args = _common_args(cfg, cfg.stages[0], tmp_path)
    assert (args["weight_decay"], args["gradient_accumulation_steps"], args["learning_rate"]) == (1e-2, 2, 1e-6)
    res = run(cfg)
    assert (res["status"], res["scale"], res["metrics"]["n"]) == ("complete", "paper", 4)
    [state] = (tmp_path / "_stages").glob("0-grpo-*/checkpoint-2/trainer_state.json")
    logged = json.loads(state.read_text())["log_history"][0]
    assert {"rewards/accuracy_reward_boxed/mean", "rewards/format_reward_boxed/mean"} <= set(logged)
