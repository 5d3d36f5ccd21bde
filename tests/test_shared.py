"""Each group's shared work once (`vrft_aug.shared` and `VRFTTrainer`'s switches).

* Imitation loss on distinct rows, weighted by their counts: the loss and every gradient equal the loss with every row
  scored, within 1e-5: one process, gradient accumulation (shuffled micro-batches), and 2 processes (torchrun, gloo).
* Prompt processing once per group: the batch TRL builds (prompt ids, pixel values, grids, token types, ...) is the
  same tensor for tensor with the switch on and off, and the processor really ran on the distinct prompts only.
* Shared-prefix generation on the committed tiny base with knowledge prompts of different lengths: greedy completions
  are token-identical to `generate`'s; per-token log-probabilities of the sampled completions match the full forward
  on the repeated prompts within 1e-5; sampling draws from the same distribution (chi-squared tests against the
  exact first-token probabilities and between the two paths, which reject a cache copied to the wrong rows)."""
import copy, json, os, subprocess, sys, warnings
from pathlib import Path

import numpy as np
import pytest, torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "scripts"))
from vrft_toy import base_args, contains_solution, length_reward  # noqa: E402
from dedup_check import CheckedVRFTTrainer  # noqa: E402
import vrft_aug.imitation as imitation  # noqa: E402
from vrft_aug.imitation import VRFTConfig, VRFTTrainer  # noqa: E402
from vrft_aug.shared import shared_prefix_generate  # noqa: E402

# ------------------------------------------------------------------------------------------------- imitation loss
def _check_records(records, micro_batches):
    assert len(records) == micro_batches, records
    assert any(r["distinct"] < r["rows"] for r in records), records          # rows were really merged
    for r in records:
        assert r["loss"] == pytest.approx(r["every_row_loss"], abs=1e-5), r
        assert r["grad_max"] > 1e-3 and r["grad_gap"] < 1e-5, r             # gradients exist and agree

@pytest.mark.parametrize("accumulation", [1, 2])
def test_distinct_row_imitation_equals_every_row(tiny, tmp_path, accumulation):
    d, proc, ds = tiny
    args = VRFTConfig(**base_args(tmp_path, per_device_train_batch_size=8 // accumulation,
                                  gradient_accumulation_steps=accumulation, imitation_coef=1.0, beta=0.05, max_steps=2))
    tr = CheckedVRFTTrainer(model=str(d), reward_funcs=[length_reward, contains_solution], args=args, train_dataset=ds,
                            processing_class=proc)
    tr.train()
    _check_records(tr.records, 2 * accumulation)

@pytest.mark.slow
def test_distinct_row_imitation_equals_every_row_on_two_processes(tmp_path):
    from vrft_aug.tiny import build_tiny_vlm
    model = build_tiny_vlm(tmp_path / "tiny", seed=0, size="test")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"): env.pop(k, None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    r = subprocess.run(torchrun + [str(ROOT / "tests" / "scripts" / "dist_dedup.py"), str(model), str(tmp_path / "out")],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for rank in (0, 1):
        res = json.loads((tmp_path / f"out.rank{rank}.json").read_text())
        assert res["num_processes"] == 2
        _check_records(res["records"], 4)   # 2 steps x 2 accumulated micro-batches of 2 rows

# --------------------------------------------------------------------------------------------- inside the trainer
def _trainer(tiny, tmp_path, **kw):
    d, proc, ds = tiny
    return VRFTTrainer(model=str(d), reward_funcs=[length_reward, contains_solution], train_dataset=ds,
                       processing_class=proc, args=VRFTConfig(**base_args(tmp_path, imitation_coef=0.5, **kw)))

def test_trl_receives_the_same_tensors(tiny, tmp_path, monkeypatch):
    "The switches change how the batch is built, not what it holds: same seed, same batch, tensor for tensor."
    tr = _trainer(tiny, tmp_path)
    rows = [tiny[2][i] for i in (0, 0, 0, 0, 1, 1, 1, 1)]
    rows = [dict(r, image=copy.deepcopy(r["image"])) for r in rows]        # separately decoded images, as TRL's loader
    proc_cls = type(tr.processing_class)
    calls, shared_calls = [], []
    orig_call, orig_template = proc_cls.__call__, proc_cls.apply_chat_template
    def call(self, *a, text=None, **kw):
        calls.append(len(text) if isinstance(text, list) else 1); return orig_call(self, *a, text=text, **kw)
    def template(self, conversation, *a, **kw):
        if kw.get("tokenize"): calls.append(len(conversation))
        return orig_template(self, conversation, *a, **kw)
    orig_spg = imitation.shared_prefix_generate
    def spg(*a, **kw): shared_calls.append(a[1]["input_ids"].shape); return orig_spg(*a, **kw)
    monkeypatch.setattr(proc_cls, "__call__", call)
    monkeypatch.setattr(proc_cls, "apply_chat_template", template)
    monkeypatch.setattr(imitation, "shared_prefix_generate", spg)
    out = {}
    for on in (False, True):
        tr.args.shared_prompt_processing = tr.args.shared_prefix_generation = on
        calls.clear()
        torch.manual_seed(0); out[on] = tr._generate_and_score_completions(rows)
        assert len(calls) >= 2 and set(calls) == ({2} if on else {8}), calls   # every processor call: distinct prompts only
    assert len(shared_calls) == 1 and shared_calls[0][0] == 8           # the shared path generated once, 8 rows
    assert set(out[True]) == set(out[False]) and "pixel_values" in out[True] and "demo_group" in out[True]
    for k, v in out[False].items():
        if torch.is_tensor(v): assert v.dtype == out[True][k].dtype and torch.equal(v, out[True][k]), k
        else: assert v == out[True][k], k
    assert out[True]["demo_group"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]

def test_shared_prefix_only_on_trls_transformers_path(tiny, tmp_path):
    tr = _trainer(tiny, tmp_path)
    assert tr._shares_prefix()
    tr.use_vllm = True; assert not tr._shares_prefix(); tr.use_vllm = False
    assert not tr._shares_prefix(has_tool_images=True)
    tr.generation_config.cache_implementation = "static"; assert not tr._shares_prefix()   # it brings its own cache
    tr.generation_config.cache_implementation = None; assert tr._shares_prefix()
    tr.args.shared_prefix_generation = False; assert not tr._shares_prefix()
    with pytest.raises(ValueError, match="gradient_checkpointing=False"):
        VRFTConfig(**base_args(tmp_path, static_cache_generation=True, gradient_checkpointing=True))

# ------------------------------------------------------------------------------------------ shared-prefix generation
@pytest.fixture(scope="module")
def base():
    "The committed tiny base, its processor, and prompts of the CPU scale (knowledge prompt) plus a short one."
    warnings.filterwarnings("ignore")
    from transformers import AutoModelForImageTextToText
    from vrft_aug.pipeline import _train_dataset, load_processor, resolve_config, tiny_base_dir
    n = torch.get_num_threads(); torch.set_num_threads(1)
    cfg = resolve_config("vrft+imitation", "cpu", overrides={"n_train": 4})
    proc = load_processor(str(tiny_base_dir()))
    ds = _train_dataset(cfg, cfg.stages[1], proc)
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_base_dir())).eval()
    short = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which cell is it? One word."}]}]
    rows = [dict(prompt=ds[0]["prompt"], image=ds[0]["image"]), dict(prompt=short, image=ds[1]["image"]),
            dict(prompt=ds[2]["prompt"], image=ds[2]["image"])]
    yield model, proc, rows
    torch.set_num_threads(n)

def _encode(proc, rows, order):
    "Left-padded model inputs for `rows[i] for i in order`, as TRL's generation path builds them."
    from trl.data_utils import prepare_multimodal_messages
    convs = [prepare_multimodal_messages(copy.deepcopy(rows[i]["prompt"]), images=[rows[i]["image"]]) for i in order]
    texts = proc.apply_chat_template(convs, add_generation_prompt=True, tokenize=False)
    return proc(images=[[rows[i]["image"]] for i in order], text=texts, padding=True, padding_side="left",
                return_tensors="pt")

def _config(proc, **kw):
    from transformers import GenerationConfig
    tok = proc.tokenizer
    return GenerationConfig(pad_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id, tok.pad_token_id],
                            disable_compile=True, **kw)

ORDER = [0, 1, 2, 0, 1, 2, 2, 1, 0]   # 3 groups of 3, interleaved

def test_greedy_is_token_identical(base):
    model, proc, rows = base
    enc = _encode(proc, rows, ORDER)
    lengths = enc["attention_mask"].sum(1)
    assert lengths.max() > 400 and lengths.min() < 100                  # knowledge prompts and a left-padded short one
    cfg = _config(proc, do_sample=False, max_new_tokens=40)
    with torch.no_grad(): ref = model.generate(**enc, generation_config=cfg)
    ours = shared_prefix_generate(model, enc, ORDER, cfg, [1] * len(ORDER))
    assert ours.shape == ref.shape and torch.equal(ours, ref)
    assert len({tuple(r) for r in ref[:, enc["input_ids"].size(1):].tolist()}) == 3   # 3 different completions

def test_logprobs_of_completions_match_the_repeated_prompt_forward(base):
    from vrft_aug.grpo import completion_mask, per_token_logps
    model, proc, rows = base
    enc = _encode(proc, rows, ORDER)
    cfg = _config(proc, do_sample=True, temperature=1.0, max_new_tokens=24, output_logits=True, return_dict_in_generate=True)
    torch.manual_seed(3)
    out = shared_prefix_generate(model, enc, ORDER, cfg, [1] * len(ORDER))
    P = enc["input_ids"].size(1)
    comp = out.sequences[:, P:]
    mask = completion_mask(comp, cfg.eos_token_id)
    ours = torch.stack(out.logits, 1).float().log_softmax(-1).gather(-1, comp[..., None])[..., 0]
    with torch.no_grad():
        ref = per_token_logps(model, torch.cat([enc["input_ids"], comp], 1), torch.cat([enc["attention_mask"], mask], 1),
                              comp.size(1), pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"],
                              mm_token_type_ids=torch.cat([enc["mm_token_type_ids"], torch.zeros_like(comp)], 1))
    m = mask.bool()
    assert m.sum() > 50 and (ours - ref)[m].abs().max() < 1e-5, (ours - ref)[m].abs().max()

def _chi2_sf(stat: float, dof: int) -> float:
    "Survival function of the chi-squared distribution (regularized upper incomplete gamma, via torch)."
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)))

def _gof_p(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    "Chi-squared goodness of fit of `counts` to `probs`, categories with expected count < 5 pooled into one."
    n = counts.sum(); exp = probs * n
    big = exp >= min_expected
    obs = np.append(counts[big], counts[~big].sum()); exp = np.append(exp[big], exp[~big].sum())
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    return _chi2_sf(stat, int(keep.sum()) - 1)

def _two_sample_p(a: dict, b: dict, min_count: int = 10) -> float:
    "Chi-squared test that two samples of categories (dicts of counts) come from one distribution; rare ones pooled."
    cats = sorted(set(a) | set(b), key=str)
    common = [c for c in cats if a.get(c, 0) + b.get(c, 0) >= min_count]
    rare = lambda s: sum(v for c, v in s.items() if c not in common)
    table = np.array([[a.get(c, 0) for c in common] + [rare(a)], [b.get(c, 0) for c in common] + [rare(b)]], float)
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2: return 1.0                                    # one category in both samples: nothing differs
    exp = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return _chi2_sf(float(((table - exp) ** 2 / exp).sum()), table.shape[1] - 1)

def _samples(fn, seeds) -> list[torch.Tensor]:
    out = []
    for s in seeds:
        torch.manual_seed(s); out.append(fn())
    return torch.cat(out)

def _exact_conditionals(model, enc, prefix_tokens) -> torch.Tensor:
    "p(token k | prompt, prefix_tokens[:, :k]) for every k, from full forwards without a cache: (rows, K, V)."
    out = []
    with torch.no_grad():
        for k in range(prefix_tokens.size(1)):
            extra = prefix_tokens[:, :k]
            logits = model(input_ids=torch.cat([enc["input_ids"], extra], 1),
                           attention_mask=torch.cat([enc["attention_mask"], torch.ones_like(extra)], 1),
                           mm_token_type_ids=torch.cat([enc["mm_token_type_ids"], torch.zeros_like(extra)], 1),
                           pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"]).logits[:, -1]
            out.append(logits.float().softmax(-1))
    return torch.stack(out, 1)

class Sampled:
    """Completions of `new` tokens for 2 prompts x G rows (`order`), several seeds per path, and what they are tested
    against: per prompt, the first position whose next-token entropy after the greedy prefix is above 0.5 nats, with
    its exact probabilities from full forwards without a cache."""
    def __init__(self, model, proc, rows, G: int, new: int):
        self.G, self.new, self.order = G, new, [0] * G + [1] * G        # a knowledge prompt and the short one
        self.enc, two = _encode(proc, rows, self.order), _encode(proc, rows, [0, 1])
        self.P = self.enc["input_ids"].size(1)
        self.cfg = _config(proc, do_sample=True, temperature=1.0, max_new_tokens=new, min_new_tokens=new)
        self.greedy_cfg = _config(proc, do_sample=False, max_new_tokens=new, min_new_tokens=new)
        with torch.no_grad():
            self.greedy = model.generate(**two, generation_config=self.greedy_cfg)[:, two["input_ids"].size(1):]
        self.exact = _exact_conditionals(model, two, self.greedy)        # (2, new, V)
        entropy = -(self.exact * self.exact.clamp_min(1e-12).log()).sum(-1)
        self.k_test = [int((entropy[g] > 0.5).nonzero()[0]) for g in (0, 1)]

    def draw(self, fn, seeds) -> torch.Tensor:
        return _samples(lambda: fn(self.enc, self.cfg)[:, self.P:], seeds)

    def rows_of(self, samples, g):
        return samples.view(-1, 2, self.G, self.new)[:, g].reshape(-1, self.new)

    def gof(self, samples, g, follow_greedy: bool = True) -> float:
        "p-value of the tested position's tokens against the exact probabilities (samples that followed the greedy prefix)."
        s, k = self.rows_of(samples, g), self.k_test[g]
        if follow_greedy: s = s[(s[:, :k] == self.greedy[g, :k]).all(1)]
        assert len(s) > 0.75 * len(self.rows_of(samples, g)), len(s)
        return _gof_p(np.bincount(s[:, k].numpy(), minlength=self.exact.size(-1)), self.exact[g, k].numpy())

    def marginal(self, samples, g, k) -> dict:
        vals, counts = self.rows_of(samples, g)[:, k].unique(return_counts=True)
        return dict(zip(vals.tolist(), counts.tolist()))

    def assert_same(self, a, b):
        "Both samples fit the exact probabilities, and no position's marginal differs between them."
        for g in (0, 1):
            assert self.gof(a, g) > 1e-3 and self.gof(b, g) > 1e-3, g
            for k in range(self.new):
                assert _two_sample_p(self.marginal(a, g, k), self.marginal(b, g, k)) > 1e-3 / self.new, (g, k)

@pytest.mark.slow
def test_sampling_draws_from_the_same_distribution(base):
    """6-token completions, 4 x 48 per prompt and path, different seeds per path (a test of the distribution, not of
    equal random streams). A control that decodes every row from the first prompt's cache is rejected."""
    model, proc, rows = base
    S = Sampled(model, proc, rows, G=48, new=6)
    with torch.no_grad():
        plain = S.draw(lambda enc, cfg: model.generate(**enc, generation_config=cfg), range(100, 104))
    shared = S.draw(lambda enc, cfg: shared_prefix_generate(model, enc, S.order, cfg, [1] * len(S.order)), range(200, 204))
    wrong = S.draw(lambda enc, cfg: shared_prefix_generate(model, enc, [0] * len(S.order), cfg, [1] * len(S.order)),
                   range(300, 304))
    S.assert_same(plain, shared)
    # the second prompt's rows decoded from the first prompt's cache: both tests reject them
    assert min(_two_sample_p(S.marginal(plain, 1, k), S.marginal(wrong, 1, k)) for k in range(S.new)) < 1e-6
    assert S.gof(wrong, 1, follow_greedy=False) < 1e-6

@pytest.mark.slow
def test_compiled_static_cache_decoding(base):
    """`static_cache=True` (static KV cache, compiled decoding step; compiled once here, on CPU): greedy completions
    token-identical to `generate`'s, and sampling from the same distribution (4 x 24 per prompt and path)."""
    model, proc, rows = base
    S = Sampled(model, proc, rows, G=24, new=6)
    groups, n_img = S.order, [1] * len(S.order)
    with torch.no_grad(): ref = model.generate(**S.enc, generation_config=S.greedy_cfg)
    ours = shared_prefix_generate(model, S.enc, groups, S.greedy_cfg, n_img, static_cache=True)
    assert torch.equal(ours, ref)
    with torch.no_grad():
        plain = S.draw(lambda enc, cfg: model.generate(**enc, generation_config=cfg), range(100, 104))
    from vrft_aug.shared import _static_caches
    cache = _static_caches[model][1]
    static = S.draw(lambda enc, cfg: shared_prefix_generate(model, enc, groups, cfg, n_img, static_cache=True),
                    range(400, 404))
    assert _static_caches[model][1] is cache                               # one static cache, emptied and reused
    S.assert_same(plain, static)

# ------------------------------------------------------------------------------------------ shared prefix in the loss
@pytest.mark.parametrize("lora", [False, True])
def test_shared_prefix_loss_equals_trls_scoring(tiny, tmp_path, monkeypatch, lora):
    """On one batch (2 prompts x 4 completions, beta > 0 so the reference log-probs are scored too, imitation on): the
    batch, TRL's loss and every gradient with `shared_prefix_loss` equal those without it, and the shared path ran;
    also through PEFT, whose forward passes extra None arguments and scores the reference with adapters off."""
    import vrft_aug.shared as shared
    if lora:
        from peft import LoraConfig
        d, proc, ds = tiny
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        tr = VRFTTrainer(model=str(d), reward_funcs=[length_reward, contains_solution], train_dataset=ds,
                         processing_class=proc, peft_config=cfg,
                         args=VRFTConfig(**base_args(tmp_path, imitation_coef=0.5, beta=0.1)))
        for n, p in tr.model.named_parameters():                  # lora_B starts at 0: move it so adapters matter
            if "lora_B" in n: torch.nn.init.normal_(p, std=0.1)
    else: tr = _trainer(tiny, tmp_path, beta=0.1)
    rows = [dict(r, image=copy.deepcopy(r["image"])) for r in (tiny[2][i] for i in (0, 0, 0, 0, 1, 1, 1, 1))]
    calls = []
    orig = shared.shared_prefix_hidden
    def spy(*a, **kw): calls.append(len(set(a[4]))); return orig(*a, **kw)
    monkeypatch.setattr(shared, "shared_prefix_hidden", spy)
    tr.current_gradient_accumulation_steps = 1
    out = {}
    for on in (False, True):
        tr.args.shared_prefix_loss = on
        torch.manual_seed(0); batch = tr._generate_and_score_completions(rows)
        tr.model.zero_grad()
        loss = tr.compute_loss(tr.model, batch)
        loss.backward()
        out[on] = batch, loss.detach(), {n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None}
    assert calls and set(calls) == {2}, calls         # the reference pass and the loss, each on 2 distinct prompts
    (b0, l0, g0), (b1, l1, g1) = out[False], out[True]
    assert torch.equal(b0["completion_ids"], b1["completion_ids"])
    assert (b0["ref_per_token_logps"] - b1["ref_per_token_logps"]).abs().max() < 1e-5
    assert abs(l0 - l1) < 1e-5 and set(g0) == set(g1) and any(("lora_" if lora else "visual") in k for k in g1)
    gap = max((g0[k] - g1[k]).abs().max().item() for k in g0)
    assert max(g.abs().max().item() for g in g0.values()) > 1e-3 and gap < 1e-5, gap

def test_shared_prefix_loss_only_where_it_can_run(tiny, tmp_path):
    tr = _trainer(tiny, tmp_path)
    assert tr._scoring_model(tr.model) is tr.model
    tr.model.activation_checkpointing_enable(); tr.model.train()
    assert tr._scoring_model(tr.model) is None                         # checkpointing drops the KV cache
    tr.model.activation_checkpointing_disable()
    tr.args.shared_prefix_loss = False; assert tr._scoring_model(tr.model) is None
