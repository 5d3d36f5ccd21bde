"""Shared fixtures for the GRPO / trainer / distributed tests: a tiny TRL VLM dataset and deterministic rewards.

Kept independent of vrft_aug.data / vrft_aug.rewards on purpose, so these tests check the trainer, not the data code."""
from __future__ import annotations
import os
from PIL import Image

COLOURS = ["red", "green", "blue", "yellow"]

def toy_rows(n: int = 4) -> list[dict]:
    "n rows in TRL's VLM format: a conversational prompt, an image, a solution, and a demonstration."
    rows = []
    for i in range(n):
        c = COLOURS[i % len(COLOURS)]
        rows.append(dict(prompt=[{"role": "user", "content": "Which colour fills the image? Options: red, green, blue, yellow."}],
                         image=Image.new("RGB", (56, 56), c), solution=c, id=f"toy-{i}",
                         # rationales of different lengths, so per-micro-batch token counts differ
                         demonstration=f"<think> {'the image is ' * 2 ** (i % 4)}{c} </think><answer> {c} </answer>"))
    return rows

def toy_dataset(n: int = 4):
    from datasets import Dataset
    return Dataset.from_list(toy_rows(n))

def length_reward(completions, **kw):
    "Varies with the sampled text, so advantages are not all zero."
    return [len(c[0]["content"]) / 10 for c in completions]

def contains_solution(completions, solution, **kw):
    return [float(s in c[0]["content"]) for c, s in zip(completions, solution)]

def position_reward(completions, solution, **kw):
    "Deterministic whatever is sampled: depends on the solution and the position inside the local list (group slot)."
    g = int(os.environ.get("VRFT_TOY_G", "4"))
    return [COLOURS.index(s) / 4 + (i % g) * 0.25 for i, s in enumerate(solution)]

def base_args(output_dir, **kw) -> dict:
    "GRPOConfig keyword arguments for a fast CPU run of the tiny model."
    args = dict(output_dir=str(output_dir), use_cpu=True, bf16=False, report_to=[], gradient_checkpointing=False,
                per_device_train_batch_size=8, num_generations=4, max_completion_length=12, learning_rate=1e-2,
                max_steps=2, logging_steps=1, seed=0, save_strategy="no", disable_tqdm=True)
    args.update(kw)
    return args
