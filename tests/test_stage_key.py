"""The stage cache key: every field that can change what a stage trains moves its key, and nothing else does.
Two configs that differ only in (say) the learning rate must never share a trained stage; two that differ only in
evaluation settings must share it. A new config field fails here until it is placed in one of the lists."""
import dataclasses
from dataclasses import fields

import pytest

from vrft_aug.pipeline import (RunConfig, StageConfig, resolve_config, stage_dirs, stage_key, STAGE_KEY_FIELDS,
                               STAGE_KEY_RESOLVED, NOT_IN_STAGE_KEY)

RUN_FIELDS = {f.name for f in fields(RunConfig)}

def test_every_run_field_is_placed_once():
    groups = [set(STAGE_KEY_FIELDS), set(STAGE_KEY_RESOLVED), set(NOT_IN_STAGE_KEY)]
    assert set().union(*groups) == RUN_FIELDS, sorted(RUN_FIELDS ^ set().union(*groups))
    assert sum(map(len, groups)) == len(RUN_FIELDS), "a field is in two lists"

# a different value for every StageConfig field (the vrft preset's GRPO stage is stage 1)
STAGE_CHANGES = dict(kind="sft", warm_start=True, task="localization", prompt="knowledge", rewards={"accuracy": 2.0},
                     ordinal_reward="mfrs", imitation_coef=0.5, steps=41, steps_scale=2.0, learning_rate=1e-4,
                     batch_size=16, num_generations=4, max_length=512, max_completion_length=32, temperature=1.0,
                     beta=0.04, loss_type="grpo", use_vllm=True, weight_decay=0.1,
                     gradient_accumulation_steps=4)

def test_stage_changes_cover_every_stage_field():
    assert set(STAGE_CHANGES) == {f.name for f in fields(StageConfig)}

@pytest.mark.parametrize("name", sorted(STAGE_CHANGES))
def test_each_stage_field_moves_the_key(name):
    cfg = resolve_config("vrft", "cpu")
    st = cfg.stages[1]
    assert getattr(st, name) != STAGE_CHANGES[name], name
    changed = dataclasses.replace(cfg, stages=[cfg.stages[0], dataclasses.replace(st, **{name: STAGE_CHANGES[name]})])
    assert stage_key(changed, 1, "prev") != stage_key(cfg, 1, "prev"), f"stages.1.{name} does not enter the stage key"

# a different value for every RunConfig field read directly by the key
RUN_CHANGES = dict(n_train=64, seed=1, image_size=64, medmnist_size=64, medmnist_root="/elsewhere", knowledge="cells",
                   options="letter", demonstration_words=5, use_cpu=False, bf16=True, lora=True, lora_r=8, lora_alpha=16,
                   protocol="boxed", system_prompt="Answer in a box.", reward_weights={"format": 0.1})

def test_run_changes_cover_the_key_fields():
    assert set(RUN_CHANGES) == set(STAGE_KEY_FIELDS)

@pytest.mark.parametrize("name", sorted(RUN_CHANGES))
def test_each_key_field_moves_every_stage_key(name):
    cfg = resolve_config("vrft", "cpu")
    changed = dataclasses.replace(cfg, **{name: RUN_CHANGES[name]})
    for i in range(len(cfg.stages)):
        assert stage_key(changed, i, "prev") != stage_key(cfg, i, "prev"), f"{name} does not enter stage {i}'s key"

def test_learning_rate_alone_gives_a_new_stage():
    base = resolve_config("vrft", "cpu")
    lr = resolve_config("vrft", "cpu", {"stages.1.learning_rate": 1e-4})
    assert stage_dirs(lr)[0] == stage_dirs(base)[0]       # the shared warm start
    assert stage_dirs(lr)[1] != stage_dirs(base)[1]
    lr0 = resolve_config("vrft", "cpu", {"stages.0.learning_rate": 1e-4})
    assert all(a != b for a, b in zip(stage_dirs(lr0), stage_dirs(base)))   # a new warm start: every later stage too

def test_resolved_fields_move_the_key_where_the_stage_uses_them():
    base = resolve_config("vrft", "cpu")
    other_model = dataclasses.replace(base, model="tiny-random:test")
    assert all(a != b for a, b in zip(stage_dirs(other_model), stage_dirs(base)))
    fundus = resolve_config("vrft", "cpu", {"dataset": "synthmed-fundus"})
    assert all(a != b for a, b in zip(stage_dirs(fundus), stage_dirs(base)))
    # the prompt: the warm start trains on the plain prompt whatever the run's prompt, the GRPO stage on the run's
    kn = dataclasses.replace(base, prompt="knowledge")
    assert stage_dirs(kn)[0] == stage_dirs(base)[0] and stage_dirs(kn)[1] != stage_dirs(base)[1]
    # the localization dataset moves only a stage that trains on it
    pa = resolve_config("vrft+loc", "cpu")
    loc = [i for i, s in enumerate(pa.stages) if s.task == "localization"]
    assert loc, [s.task for s in pa.stages]
    moved = dataclasses.replace(pa, localization_dataset="synthmed-cells")
    assert [a != b for a, b in zip(stage_dirs(moved), stage_dirs(pa))] == [i >= loc[0] for i in range(len(pa.stages))]

NOT_IN_CHANGES = dict(preset="other", scale="gpu", description="x", tasks=["classification"], run_name="r",
                      output_dir="elsewhere", n_test=7, eval_batch_size=3, eval_max_new_tokens=9, save_steps=3,
                      curve_every=5, curve_n=3)

def test_fields_outside_the_key_do_not_split_the_cache():
    assert set(NOT_IN_CHANGES) == set(NOT_IN_STAGE_KEY)
    base = resolve_config("vrft", "cpu")
    for name, v in NOT_IN_CHANGES.items():
        changed = dataclasses.replace(base, **{name: v})
        assert [stage_key(changed, i, "p") for i in range(2)] == [stage_key(base, i, "p") for i in range(2)], name
