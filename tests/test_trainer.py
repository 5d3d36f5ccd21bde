"""VRFTTrainer: mu = 0 is GRPOTrainer exactly; mu > 0 works with LoRA, beta > 0 and gradient accumulation."""
import sys
from pathlib import Path
import pytest, torch

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from vrft_toy import length_reward, contains_solution, base_args  # noqa: E402
from vrft_aug.imitation import VRFTConfig, VRFTTrainer  # noqa: E402


REWARDS = [length_reward, contains_solution]

def _train(cls, cfg_cls, tiny, tmp_path, **kw):
    d, proc, ds = tiny
    extra = {k: kw.pop(k) for k in ("peft_config", "demonstration_fn") if k in kw}
    tr = cls(model=str(d), reward_funcs=REWARDS, args=cfg_cls(**base_args(tmp_path, **kw)), train_dataset=ds,
             processing_class=proc, **extra)
    tr.initial_params = _params(tr)
    tr.train()
    return tr

def _params(tr): return {k: v.detach().clone() for k, v in tr.model.named_parameters()}

def test_mu_zero_trains_exactly_like_grpo(tiny, tmp_path, monkeypatch):
    """mu = 0 is GRPO: bit for bit with TRL's scoring path (shared_prefix_loss off; shared processing and generation
    stay on, they give the same tensors and tokens), and within float noise with the default shared-prefix loss."""
    from trl import GRPOConfig, GRPOTrainer
    ref = _params(_train(GRPOTrainer, GRPOConfig, tiny, tmp_path / "a", max_steps=3, beta=0.05))
    def boom(*a, **k): raise AssertionError("the imitation path ran with imitation_coef=0")
    monkeypatch.setattr(VRFTTrainer, "imitation_logps", boom)
    monkeypatch.setattr(VRFTTrainer, "_tokenize_demonstrations", boom)
    tr = _train(VRFTTrainer, VRFTConfig, tiny, tmp_path / "b", max_steps=3, beta=0.05, imitation_coef=0.0,
                shared_prefix_loss=False)
    ours = _params(tr)
    init = tr.initial_params
    assert any(not torch.equal(ours[k], init[k]) for k in ours)          # training moved the weights
    assert all(torch.equal(ours[k], ref[k]) for k in ref), "VRFTTrainer(mu=0) diverged from GRPOTrainer"
    assert not any("imitation/loss" in h for h in tr.state.log_history)
    shared = _params(_train(VRFTTrainer, VRFTConfig, tiny, tmp_path / "c", max_steps=3, beta=0.05, imitation_coef=0.0))
    moved = max((ref[k] - init[k]).abs().max().item() for k in ref)
    gap = max((shared[k] - ref[k]).abs().max().item() for k in ref)
    # measured: gap 7.5e-5 against 2.0e-2 moved. Adam divides each gradient by its running RMS, which turns float
    # noise on near-zero gradients into steps of up to lr; a cache read by the wrong rows moves weights by ~moved
    assert gap < 2e-2 * moved, (gap, moved)

def test_imitation_lowers_nll_and_is_logged(tiny, tmp_path):
    tr = _train(VRFTTrainer, VRFTConfig, tiny, tmp_path, max_steps=4, imitation_coef=1.0)
    nll = [h["imitation/loss"] for h in tr.state.log_history if "imitation/loss" in h]
    assert len(nll) == 4 and nll[-1] < nll[0], nll

def test_lora_beta_and_imitation(tiny, tmp_path):
    from peft import LoraConfig
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    tr = _train(VRFTTrainer, VRFTConfig, tiny, tmp_path, max_steps=2, imitation_coef=0.5, beta=0.1, peft_config=cfg)
    logs = [h for h in tr.state.log_history if "imitation/loss" in h]
    assert len(logs) == 2 and all("kl" in h for h in logs)
    p = dict(tr.model.named_parameters())
    lora = [k for k in p if "lora_" in k]
    assert lora and all(p[k].requires_grad for k in lora)
    assert not any(v.requires_grad for k, v in p.items() if "lora_" not in k)   # base weights frozen
    assert any(p[k].abs().sum() > 0 for k in lora if "lora_B" in k)           # adapters trained (B starts at 0)

def test_gradient_accumulation_equals_one_big_step(tiny, tmp_path, monkeypatch):
    # Same 8 completions (one generation batch), either one step of 8 or 2 accumulated micro-batches of 4: with the
    # dapo-style normalisation of both terms the update is the same. Plain SGD, so the update is lr x gradient.
    counts = []
    orig = VRFTTrainer.compute_loss
    def spy(self, model, inputs, *a, **kw):   # demonstration tokens of each (micro-)batch, repeated rows included
        counts.append(int(inputs["demo_completion_mask"].sum())); return orig(self, model, inputs, *a, **kw)
    monkeypatch.setattr(VRFTTrainer, "compute_loss", spy)
    kw = dict(max_steps=1, imitation_coef=0.5, beta=0.1, optim="sgd", learning_rate=0.1, max_grad_norm=0.0,
              num_generations=2, max_completion_length=40, seed=1)
    big = _train(VRFTTrainer, VRFTConfig, tiny, tmp_path / "a", **kw)
    acc = _train(VRFTTrainer, VRFTConfig, tiny, tmp_path / "b", per_device_train_batch_size=4,
                 gradient_accumulation_steps=2, **kw)
    # the micro-batches hold different numbers of demonstration tokens, so a per-micro-batch mean would differ
    assert len(counts) == 3 and counts[1] != counts[2] and counts[1] + counts[2] == counts[0], counts
    a, b = _params(big), _params(acc)
    init = big.initial_params
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    gap = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-4 and gap < 1e-4 * moved, (moved, gap)

def test_demonstration_sources_and_errors(tiny, tmp_path):
    d, proc, ds = tiny
    calls = []
    def demo(row):
        calls.append(row["solution"]); return f"<answer> {row['solution']} </answer>"
    _train(VRFTTrainer, VRFTConfig, (d, proc, ds.remove_columns("demonstration")), tmp_path / "a", max_steps=1,
           imitation_coef=0.5, demonstration_fn=demo)
    assert len(calls) == 8 and set(calls) <= {"red", "green", "blue", "yellow"}
    with pytest.raises(ValueError, match="no demonstration"):
        _train(VRFTTrainer, VRFTConfig, (d, proc, ds.remove_columns("demonstration")), tmp_path / "b", max_steps=1,
               imitation_coef=0.5)
    with pytest.raises(ValueError, match="imitation_coef"):
        VRFTConfig(**base_args(tmp_path, imitation_coef=float("nan")))

def test_sft_warm_start_saves_a_loadable_model(tiny, tmp_path):
    from vrft_aug.imitation import sft_warm_start, sft_dataset
    from vrft_aug.tiny import load_tiny_vlm
    d, proc, ds = tiny
    s = sft_dataset(ds)
    assert s.column_names == ["prompt", "images", "completion"] and s[0]["completion"][0]["role"] == "assistant"
    out = sft_warm_start(d, ds, tmp_path / "warm", steps=3, use_cpu=True, bf16=False, gradient_checkpointing=False)
    m, p = load_tiny_vlm(out)
    m0, _ = load_tiny_vlm(d)
    assert any(not torch.equal(a, b) for a, b in zip(m.parameters(), m0.parameters()))
    with pytest.raises(KeyError, match="demonstration"): sft_dataset(ds.remove_columns("demonstration"))

def test_loss_adds_exactly_mu_times_the_imitation_loss(tiny, tmp_path):
    "L(mu) - L(0) = mu x L_imitation on one fixed batch, for two values of mu (bugs: mu ignored, or applied twice)."
    from vrft_aug.imitation import imitation_loss
    d, proc, ds = tiny
    tr = VRFTTrainer(model=str(d), reward_funcs=REWARDS, args=VRFTConfig(**base_args(tmp_path, imitation_coef=0.5)),
                     train_dataset=ds, processing_class=proc)
    tr.current_gradient_accumulation_steps = 1        # set by the training loop, read by compute_loss
    tr.model.train()
    inputs = tr._prepare_inputs(next(iter(tr.get_train_dataloader())))
    assert "demo_completion_ids" in inputs
    def loss(mu):
        tr.args.imitation_coef = mu
        with torch.no_grad(): return tr.compute_loss(tr.model, inputs).item()
    with torch.no_grad():
        imit = imitation_loss(tr.imitation_logps(tr.model, inputs), inputs["demo_completion_mask"],
                              num_items=inputs["demo_num_items"]).item()
    l0 = loss(0.0)
    assert imit > 0.1, imit
    for mu in (0.5, 2.0):
        assert loss(mu) - l0 == pytest.approx(mu * imit, rel=1e-4, abs=1e-6), (mu, loss(mu), l0, imit)
