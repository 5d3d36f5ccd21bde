"""GPU check: a few GRPO steps of a Qwen2.5-VL-3B-architecture model, with LoRA and with full fine-tuning.

Nothing is downloaded. The model is built from Qwen2.5-VL-3B-Instruct's published configuration (text: hidden 2048,
36 layers, 16 heads, 2 KV heads, MLP 11008, M-RoPE sections [16, 24, 24], rope theta 1e6, tied embeddings,
vocabulary 151936; vision: depth 32, hidden 1280, MLP 3420, 16 heads, 14 px patches, 2x2 merge, window 112 px with
full attention in blocks 7, 15, 23, 31, output 2048) with random weights in bf16. The real tokenizer is not available,
so the project's tiny byte-level BPE is padded with filler tokens to the real vocabulary size (151936), so that the
embedding, the LM head and the sampling over the vocabulary cost what they cost with the real model.

Phases (G = 8 completions of exactly 256 tokens for one 448 px SynthMed image per step, beta = 0, TRL defaults
otherwise, gradient checkpointing on; `--prompt knowledge` puts the knowledge block in the prompt, as at the CPU
scale, instead of the plain prompt):
1. full fine-tuning: `GRPOTrainer`, `VRFTTrainer` (imitation off; shared prompt processing and shared-prefix
   generation on, the defaults) and `VRFTTrainer` with both sharing switches off ("vrft_unshared"), alternating over
   rounds; step time of each and their ratios to GRPO's (the same ratios bench/overhead.py reports on CPU);
2. full fine-tuning with the imitation loss on (imitation_coef = 0.1, each distinct demonstration scored once): its
   step time over GRPO's;
3. LoRA (r = 16 on the text attention projections): `GRPOTrainer` and `VRFTTrainer`, one round each;
4. (on a GPU by default, `--static` for the toy, `--no-static` to skip) full fine-tuning, `GRPOTrainer` against
   `VRFTTrainer` with `static_cache_generation` (static KV cache, compiled decoding step with CUDA graphs), both
   without gradient checkpointing (which the static cache cannot be combined with): the first `train()` call of each
   compiles or warms up (not counted), then one round is measured.
Per phase: median step time, generated tokens per second (G x 256 over TRL's `transformers.generate` span), the split
of a step (generation, scoring, other preparation, update) and the peak GPU memory (torch.cuda.max_memory_allocated).
The first step of every `train()` call is warm-up and not counted.

On a GPU machine (measured: 423 s for the script on one H200, plus about 30 s of imports; budget 8 minutes; the JSON
is rewritten after every phase, so a run cut by `timeout` keeps what it measured; `--rounds 1` saves about 100 s):
    HF_HUB_OFFLINE=1 python bench/gpu_check.py --out bench/results/gpu_check.json
    HF_HUB_OFFLINE=1 python bench/gpu_check.py --prompt knowledge --rounds 1 --out bench/results/gpu_check_knowledge.json
On CPU at toy size (what the tests run, tens of seconds): the same code path with a tiny config, fp32, G = 4,
8-token completions, 56 px images (gradient checkpointing on, as on the GPU) and the tokenizer padded to 4096 entries only (at 151936 entries the LM head and
TRL's chunked log-prob kernel dominate a CPU step of the toy: about 20 s instead of 1 s):
    .venv/bin/python bench/gpu_check.py --toy      # writes <tmp>/vrft_aug_bench/gpu_check_quick.json unless --out
"""
from __future__ import annotations
import argparse, gc, json, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Spans, result_path, grpo_args, machine, median, quiet, reward_funcs, rss_mb, silence_trainer,  # noqa: E402
                    split_step, step_timer, train_dataset, write_json)

QWEN25_VL_3B_VOCAB = 151936
# Qwen2.5-VL-3B-Instruct's config.json (text part and vision_config), as published with the model.
QWEN25_VL_3B_TEXT = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                         num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu",
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                         tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768, max_window_layers=70,
                         attention_dropout=0.0, initializer_range=0.02)
QWEN25_VL_3B_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_chans=3,
                           out_hidden_size=2048, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                           window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu")
# The toy: the same code path at the tiny model's size ("test"), still with the real vocabulary size.
TOY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                max_position_embeddings=2048, rms_norm_eps=1e-6, hidden_act="silu",
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
                tie_word_embeddings=True)
TOY_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1])

def padded_tokenizer(vocab_size: int = QWEN25_VL_3B_VOCAB):
    """The project's tiny byte-level BPE (`vrft_aug.tiny.train_tiny_tokenizer`) with filler tokens added to its base
    vocabulary so that `len(tokenizer) == vocab_size`. Fillers are never produced by encoding (no merge yields them)
    but decode to plain text (" fill123"), like rare tokens of a real vocabulary."""
    from transformers import Qwen2Tokenizer
    from vrft_aug.core import PROTOCOL_TAGS
    from vrft_aug.tiny import QWEN_SPECIAL_TOKENS, train_tiny_tokenizer
    tiny = train_tiny_tokenizer()
    model = json.loads(tiny.backend_tokenizer.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    n_added = len(QWEN_SPECIAL_TOKENS) - 1 + len(PROTOCOL_TAGS)
    need = vocab_size - n_added - len(vocab)
    if need < 0: raise ValueError(f"vocab_size={vocab_size} is smaller than the tiny tokenizer ({len(vocab) + n_added})")
    i = 0
    while need > 0:
        tok = f"\u0120fill{i}"; i += 1   # "Ġ" is the byte-level symbol of a space
        if tok not in vocab: vocab[tok] = len(vocab); need -= 1
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None)
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    tok.add_tokens(list(PROTOCOL_TAGS), special_tokens=False)
    if len(tok) != vocab_size: raise RuntimeError(f"padded tokenizer has {len(tok)} tokens, expected {vocab_size}")
    return tok

def vl_config(tokenizer, text: dict, vision: dict):
    "A `Qwen2_5_VLConfig` from text/vision settings, its special token ids taken from `tokenizer`."
    from transformers import Qwen2_5_VLConfig
    ids = tokenizer.convert_tokens_to_ids
    text = dict(text, vocab_size=len(tokenizer), bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                pad_token_id=ids("<|endoftext|>"))
    return Qwen2_5_VLConfig(text_config=text, vision_config=dict(vision), image_token_id=ids("<|image_pad|>"),
                            video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                            vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=text["tie_word_embeddings"])

def build_model(cfg, dtype, device):
    "Random weights of `cfg`, created directly on `device` in `dtype` (seconds for 3B parameters on a GPU)."
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    tc = cfg.text_config
    model.generation_config = GenerationConfig(eos_token_id=[tc.eos_token_id, tc.pad_token_id], pad_token_id=tc.pad_token_id)
    return model

class Memory:
    "Peak memory of a phase: CUDA's max allocated on a GPU, else this process's peak RSS (which never goes down)."
    def __init__(self, cuda: bool): self.cuda = cuda
    def reset(self):
        import torch
        gc.collect()
        if self.cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    def peak_gb(self) -> float:
        import torch
        if self.cuda: return torch.cuda.max_memory_allocated() / 2**30
        return rss_mb()["peak_rss_mb"] / 1024

def _trainer(kind, model, proc, ds, out, s, timer, imitation_coef=0.0):
    "`kind`: grpo, vrft, vrft_imitation (imitation_coef > 0), vrft_unshared (sharing off), vrft_static (compiled decoding)."
    from trl import GRPOConfig, GRPOTrainer
    from vrft_aug.imitation import VRFTConfig, VRFTTrainer
    funcs, weights = reward_funcs()
    kw = grpo_args(out, G=s["G"], completion_len=s["completion_len"], prompts_per_step=1, reward_weights=weights,
                   use_cpu=not s["cuda"], bf16=s["cuda"], gradient_checkpointing=s["gradient_checkpointing"],
                   max_steps=s["steps"] + 1)
    if kind == "grpo": cls, args = GRPOTrainer, GRPOConfig(**kw)
    else:
        shared = kind != "vrft_unshared"
        cls, args = VRFTTrainer, VRFTConfig(**kw, imitation_coef=imitation_coef, shared_prompt_processing=shared,
                                            shared_prefix_generation=shared, shared_prefix_loss=shared,
                                            static_cache_generation=kind == "vrft_static")
    return silence_trainer(cls(model=model, reward_funcs=funcs, args=args, train_dataset=ds, processing_class=proc,
                               callbacks=[timer]))

def _run(tr, timer) -> list[dict]:
    "One `train()` call; returns its measured steps (the first is warm-up) and frees the optimizer's state."
    tr.train()
    steps = timer.chunk[1:]
    tr.optimizer, tr.lr_scheduler = None, None
    for name in ("_optimizers", "_schedulers"):   # accelerate keeps every prepared optimizer: drop their states
        if isinstance(getattr(tr.accelerator, name, None), list): getattr(tr.accelerator, name).clear()
    tr.model.zero_grad(set_to_none=True)
    return steps

def _summary(steps: list[dict], s: dict) -> dict:
    split = {k: median([split_step(x)[k] for x in steps]) for k in ("step_s", "generation_s", "scoring_s", "other_prep_s",
                                                                     "update_s")}
    tokens = s["G"] * s["completion_len"]
    return dict(steps_measured=len(steps), median_step_s=split["step_s"], split_s=split,
                generated_tokens_per_s=tokens / split["generation_s"] if split["generation_s"] > 0 else None)

def phase(name, kinds, model, proc, ds, tmp, s, spans, mem, rounds=1, imitation_coef=0.0, warmup_calls=0) -> dict:
    """Alternate trainers of `kinds` over `rounds` (order rotating), then summarise each and their ratio to the first.
    `warmup_calls` unmeasured `train()` calls of every trainer come first (compilation)."""
    mem.reset()
    t0 = time.perf_counter()
    timers = {k: step_timer(spans) for k in kinds}
    trainers = {k: _trainer(k, model, proc, ds, Path(tmp) / f"{name}-{k}", s, timers[k],
                            imitation_coef if k == "vrft_imitation" else 0.0) for k in kinds}
    steps = {k: [] for k in kinds}
    for _ in range(warmup_calls):
        for k in kinds: _run(trainers[k], timers[k])
    order = list(kinds)
    for _ in range(rounds):
        for k in order: steps[k] += _run(trainers[k], timers[k])
        order = order[1:] + order[:1]
    out = {k: _summary(steps[k], s) for k in kinds}
    base = out[kinds[0]]["median_step_s"]
    for k in kinds[1:]: out[f"{k}_over_{kinds[0]}"] = out[k]["median_step_s"] / base
    out["peak_mem_gb"] = mem.peak_gb()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    del trainers; mem.reset()
    return out

def run(toy: bool = False, out=None, steps: int | None = None, rounds: int | None = None, prompt: str = "plain",
        static: bool | None = None) -> dict:
    import torch
    quiet()
    if toy: torch.set_num_threads(1)   # 2 shared cores: one thread keeps the toy's timings from oversubscription
    cuda = torch.cuda.is_available() and not toy
    if not toy and not cuda:
        raise SystemExit("gpu_check: no CUDA device found; run with --toy for the CPU smoke version")
    s = dict(toy=toy, cuda=cuda, G=4 if toy else 8, completion_len=8 if toy else 256, image_size=56 if toy else 448,
             steps=steps or (1 if toy else 2), rounds=rounds or (1 if toy else 2), gradient_checkpointing=True,
             dtype="float32" if toy else "bfloat16", lora=dict(r=16, alpha=32, target_modules=["q_proj", "k_proj",
                                                                                                  "v_proj", "o_proj"]),
             imitation_coef=0.1, vocab_size=4096 if toy else QWEN25_VL_3B_VOCAB, prompt=prompt,
             static=(not toy) if static is None else static)
    t0 = time.perf_counter()
    res = dict(settings=s, machine_start=machine())
    from peft import LoraConfig, get_peft_model
    from vrft_aug.tiny import make_processor
    tok = padded_tokenizer(s["vocab_size"])
    side = s["image_size"]
    proc = make_processor(tok, min_pixels=56 * 56, max_pixels=side * side)
    cfg = vl_config(tok, *((TOY_TEXT, TOY_VISION) if toy else (QWEN25_VL_3B_TEXT, QWEN25_VL_3B_VISION)))
    model = build_model(cfg, torch.float32 if toy else torch.bfloat16, "cuda" if cuda else "cpu")
    res["model"] = dict(parameters=sum(p.numel() for p in model.parameters()), vocab_size=cfg.text_config.vocab_size,
                        tokenizer_len=len(tok), hidden_size=cfg.text_config.hidden_size,
                        layers=cfg.text_config.num_hidden_layers, vision_depth=cfg.vision_config.depth,
                        build_seconds=round(time.perf_counter() - t0, 1))
    ds = train_dataset(8, side, variant=prompt)
    mem = Memory(cuda)
    with tempfile.TemporaryDirectory() as tmp, Spans() as spans:
        out = result_path("gpu_check", toy, out)
        res["full"] = phase("full", ("grpo", "vrft", "vrft_unshared"), model, proc, ds, tmp, s, spans, mem,
                            rounds=s["rounds"])
        write_json(res, out)   # after every phase: a run stopped by its time limit still leaves what it measured
        res["full_imitation"] = phase("full_imitation", ("grpo", "vrft_imitation"), model, proc, ds, tmp, s, spans, mem,
                                      rounds=1, imitation_coef=s["imitation_coef"])
        write_json(res, out)
        lora = LoraConfig(r=s["lora"]["r"], lora_alpha=s["lora"]["alpha"], lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=s["lora"]["target_modules"])
        model = get_peft_model(model, lora)
        res["model"]["lora_trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        res["lora"] = phase("lora", ("grpo", "vrft"), model, proc, ds, tmp, s, spans, mem, rounds=1)
        write_json(res, out)
        if s["static"]:   # last: the compilation is the slowest part, and a cut run keeps the phases above
            model = model.unload()   # back to the full model, LoRA layers removed
            # The phases above enabled gradient checkpointing on this shared model object (the flag outlives their
            # trainers), and every re-enable left forward hooks on the embeddings: switch it off and drop them, or
            # the compiled decoding step, which guards on those hooks, would recompile at every step.
            model.gradient_checkpointing_disable()
            model.get_input_embeddings()._forward_hooks.clear()
            # without gradient checkpointing, for both trainers: VRFTConfig refuses it with a static cache (see there)
            res["full_static"] = phase("full_static", ("grpo", "vrft_static"), model, proc, ds, tmp,
                                       dict(s, gradient_checkpointing=False), spans, mem, rounds=1, warmup_calls=1)
    res["vrft_over_grpo"] = dict(full=res["full"]["vrft_over_grpo"], lora=res["lora"]["vrft_over_grpo"],
                                 imitation=res["full_imitation"]["vrft_imitation_over_grpo"],
                                 full_unshared=res["full"]["vrft_unshared_over_grpo"])
    if "full_static" in res: res["vrft_over_grpo"]["full_static"] = res["full_static"]["vrft_static_over_grpo"]
    res["out"] = str(out)
    res["machine_end"], res["seconds"] = machine(), round(time.perf_counter() - t0, 1)
    write_json(res, out)
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--toy", action="store_true", help="tiny config on CPU (what the tests run)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/gpu_check.json; with "
                    "--toy <tmp>/vrft_aug_bench/gpu_check_quick.json)")
    ap.add_argument("--prompt", default="plain", choices=("plain", "knowledge"), help="prompt variant (default plain)")
    ap.add_argument("--static", action=argparse.BooleanOptionalAction, default=None,
                    help="measure compiled static-cache decoding (default: on a GPU yes, with --toy no)")
    ap.add_argument("--steps", type=int, default=None, help="measured steps per train() call (default 2; toy 1)")
    ap.add_argument("--rounds", type=int, default=None, help="alternation rounds of the full phase (default 2; toy 1)")
    a = ap.parse_args(argv)
    res = run(a.toy, a.out, a.steps, a.rounds, a.prompt, a.static)
    dev = res["machine_start"]["gpu"] or f"CPU ({res['machine_start']['cpu']})"
    print(f"{'toy' if a.toy else 'Qwen2.5-VL-3B architecture'}: {res['model']['parameters'] / 1e6:.1f} M parameters on {dev}")
    for ph in ("full", "full_imitation", "lora", "full_static"):
        if ph not in res: continue
        r = res[ph]
        for k, v in r.items():
            if isinstance(v, dict):
                tps = v["generated_tokens_per_s"]
                print(f"{ph:15s} {k:15s} step {v['median_step_s']:8.3f} s  generation {v['split_s']['generation_s']:7.3f} s "
                      f"({tps if tps is None else round(tps, 1)} tokens/s)  update {v['split_s']['update_s']:7.3f} s")
        print(f"{ph:15s} peak memory {r['peak_mem_gb']:.2f} GiB, {r['seconds']} s")
    print(f"ratios over GRPO: {res['vrft_over_grpo']}; total {res['seconds']} s -> {res['out']}")

if __name__ == "__main__":
    main()
