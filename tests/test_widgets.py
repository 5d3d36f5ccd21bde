"""The plain functions behind the widgets (no browser): reward shaping properties, the run viewer on a synthetic
pipeline-shaped output folder written here, the data browser on local MedMNIST-format files, and the widgets' wiring
driven from Python."""
import json, math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from vrft_aug.data import write_fake_medmnist
from vrft_aug.rewards import MFRS_SCHEMES
from vrft_aug.widgets import (explorer_sample, default_group, shape_rewards, reward_explorer, find_runs, load_run,
                              run_curves, default_metrics, metrics_table, run_viewer, browse_sample, browser_datasets,
                              data_browser, variants_for)

SAMPLE, KNOWLEDGE = explorer_sample()
GROUP = default_group(SAMPLE, KNOWLEDGE)
LABELS, TEXTS = list(GROUP), list(GROUP.values())
BRIEF, RECITES = LABELS.index("brief"), LABELS.index("recites")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- reward shaping -------------------------------------------------------------------------------------------------

@FAST
@given(delta=st.one_of(st.floats(0.05, 1.0), st.floats(-1.0, -0.05)), lam=st.floats(0.1, 2.0),
       alpha=st.floats(0.0, 2.0), scheme=st.sampled_from(MFRS_SCHEMES), scale=st.sampled_from(["group", "batch", "none"]))
def test_delta_sign_decides_recitation_vs_own_words(delta, lam, alpha, scheme, scale):
    r = shape_rewards(TEXTS, SAMPLE, KNOWLEDGE, scheme=scheme, lam=lam, alpha=alpha, delta=delta, scale_rewards=scale,
                      labels=LABELS)
    assert (r.advantages[RECITES] > r.advantages[BRIEF]) == (delta > 0)
    if delta > 0: assert LABELS[r.favoured] == "recites"


@pytest.mark.parametrize("scheme", MFRS_SCHEMES)
def test_delta_flip_changes_the_favoured_completion(scheme):
    plus = shape_rewards(TEXTS, SAMPLE, KNOWLEDGE, scheme=scheme, delta=0.5, labels=LABELS)
    minus = shape_rewards(TEXTS, SAMPLE, KNOWLEDGE, scheme=scheme, delta=-0.5, labels=LABELS)
    assert (LABELS[plus.favoured], LABELS[minus.favoured]) == ("recites", "brief")


@FAST
@given(c=st.floats(0.5, 10.0), delta=st.floats(-1, 1), scheme=st.sampled_from(MFRS_SCHEMES))
def test_group_advantages_ignore_a_common_weight_scale(c, delta, scheme):
    a = shape_rewards(TEXTS, SAMPLE, KNOWLEDGE, scheme=scheme, delta=delta).advantages
    b = shape_rewards(TEXTS, SAMPLE, KNOWLEDGE, scheme=scheme, lam=c, alpha=c, delta=c * delta).advantages
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)  # only the 1e-4 in the denominator differs
    assert abs(sum(a)) < 1e-6                          # advantages are centred on the group mean


@FAST
@given(texts=st.lists(st.text(max_size=200), min_size=1, max_size=6))
def test_any_text_is_scored(texts):
    r = shape_rewards(texts, SAMPLE, KNOWLEDGE)
    assert len(r.advantages) == len(texts) and all(math.isfinite(a) for a in r.advantages)


def test_classification_sample_uses_accuracy():
    s, k = explorer_sample("cells")
    r = shape_rewards(list(default_group(s, k).values()), s, k, labels=list(default_group(s, k)))
    assert r.scores.names[0] == "accuracy_reward"
    assert list(r.table()["accuracy_reward"]) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_explorer_widget_wiring():
    app = reward_explorer()
    assert LABELS[app.result.favoured] == "recites"
    table_before = app.controls["table"].value
    app.controls["delta"].value = -1.0
    assert LABELS[app.result.favoured] == "brief" and app.controls["table"].value != table_before
    app.controls["scale_rewards"].value = "none"
    np.testing.assert_allclose(app.result.advantages, np.array(app.result.total) - np.mean(app.result.total), atol=1e-6)  # float32, as TRL computes advantages
    app.controls["lam"].value = 0.0                                     # the answer term switched off
    assert app.result.scores.weights[0] == 0.0
    app.controls["completions"]["no reasoning"].value = "<think>x</think><answer>4</answer>"   # grade 4, truth 2
    assert app.result.table().loc["no reasoning", "mfrs_reward"] == pytest.approx(4.0 ** -2)


# --- run viewer -----------------------------------------------------------------------------------------------------

def _state(path: Path, hist):
    path.mkdir(parents=True, exist_ok=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": len(hist), "log_history": hist}))


@pytest.fixture
def outputs(tmp_path):
    "A pipeline-shaped output folder (two runs, stages, metrics.json), a plain TRL output_dir, and an unrelated folder."
    out = tmp_path / "outputs"
    for run, acc0 in (("base", 0.2), ("recite_minus", 0.4)):
        hist = [{"step": s, "reward": acc0 + s / 10, "rewards/accuracy_reward/mean": acc0 + s / 20,
                 "rewards/format_reward/mean": 1.0, "completions/mean_length": 50 - s, "loss": 0.0} for s in range(1, 6)]
        hist.append({"step": 5, "train_runtime": 12.0, "train_loss": 0.01})   # Trainer's final summary entry
        _state(out / run / "stages" / "0_classification", hist)
        _state(out / run / "stages" / "0_classification" / "checkpoint-3", hist[:3])
        (out / run / "config.yaml").write_text("stages: [classification]\n")
        (out / run / "metrics.json").write_text(json.dumps({"test": {"accuracy": acc0 + 0.3, "macro_f1": 0.5}}))
    _state(out / "plain_trl" / "checkpoint-2", [{"step": 2, "reward": 0.1, "eval_accuracy": 0.3}])
    _state(out / "plain_trl" / "checkpoint-4", [{"step": 2, "reward": 0.1}, {"step": 4, "reward": 0.3, "eval_accuracy": 0.5}])
    (out / "notes").mkdir(); (out / "notes" / "readme.txt").write_text("not a run")
    return out


def test_find_runs_on_stage_folders_and_trl_dirs(outputs):
    runs = find_runs(outputs)
    assert [r.name for r in runs] == ["base/stages/0_classification", "plain_trl", "recite_minus/stages/0_classification"]
    assert runs[1].path.name == "plain_trl"      # its log is the latest checkpoint's (checked below: steps 2 and 4)
    assert runs[0].metrics == {"test": {"accuracy": 0.5, "macro_f1": 0.5}} and runs[1].metrics == {}
    assert default_metrics(runs) == ["reward", "rewards/accuracy_reward/mean", "rewards/format_reward/mean",
                                     "completions/mean_length", "eval_accuracy"]
    curves = run_curves(runs)
    assert curves["reward"]["plain_trl"] == ([2, 4], [0.1, 0.3])
    assert curves["completions/mean_length"]["base/stages/0_classification"] == ([1, 2, 3, 4, 5], [49, 48, 47, 46, 45])
    assert set(curves["eval_accuracy"]) == {"plain_trl"}                 # runs that never logged a key are left out
    html = metrics_table(runs)
    assert "test/accuracy" in html and "0.7" in html


def _pipeline_run(out: Path, run: str, stages: list, done: bool = True, cwd_prefix: str = "runs"):
    "A run folder as vrft_aug.pipeline.run writes it: stage folders in the shared cache, listed in stages.json."
    listed = []
    for i, (kind, hist) in enumerate(stages):
        d = out / "_stages" / f"{i}-{kind}-{i:04d}deadbeefcafe"
        _state(d / f"checkpoint-{len(hist)}", hist)
        if done: (d / "done.json").write_text(json.dumps({"steps": len(hist), "log_history": hist}))
        listed.append(f"{cwd_prefix}/_stages/{d.name}")
    rd = out / run; rd.mkdir(parents=True)
    (rd / "stages.json").write_text(json.dumps(listed))
    (rd / "metrics.json").write_text(json.dumps({"run": run, "metrics": {"accuracy": 0.5}, "seconds": 9.0}))


def test_find_runs_on_the_pipeline_layout(tmp_path):
    out = tmp_path / "runs"
    grpo = [{"step": s, "reward": s / 4, "rewards/accuracy_reward/mean": s / 8} for s in (1, 2, 3, 4)]
    _pipeline_run(out, "vrft/synthmed-cells/seed0", [("sft", [{"step": 1, "loss": 2.0}]), ("grpo", grpo)])
    runs = find_runs(out)
    assert [r.name for r in runs] == ["vrft/synthmed-cells/seed0/0-sft", "vrft/synthmed-cells/seed0/1-grpo"]
    assert runs[1].curve("reward") == ([1, 2, 3, 4], [0.25, 0.5, 0.75, 1.0])
    assert runs[1].metrics["metrics"]["accuracy"] == 0.5
    assert "metrics/accuracy" in metrics_table(runs) and "seconds" in metrics_table(runs)
    # the same stage folder searched on its own: named by its folder, no run metrics
    assert [(r.name, r.metrics) for r in find_runs(runs[1].path)] == [(runs[1].path.name, {})]


def test_a_run_folder_itself_and_bad_files(outputs, tmp_path):
    one = find_runs(outputs / "base" / "stages" / "0_classification")
    assert [r.name for r in one] == ["0_classification"]
    bad = tmp_path / "bad"; bad.mkdir()
    (bad / "trainer_state.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"trainer_state.json.*log_history"): find_runs(bad)
    with pytest.raises(FileNotFoundError, match="no such log file"): load_run(tmp_path / "missing" / "trainer_state.json")
    (bad / "trainer_state.json").unlink(); (bad / "done.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"done.json: not valid JSON"): find_runs(bad)
    assert find_runs(outputs / "notes") == []


def test_run_viewer_widget(outputs):
    v = run_viewer(outputs)
    assert len(v.controls["runs"].options) == 3 and len(v.controls["plot"].value) > 1000
    v.controls["runs"].value = ("plain_trl",)
    assert list(v.result["reward"]) == ["plain_trl"] and "no metrics.json" in v.controls["table"].value
    v.controls["metrics"].value = ("completions/mean_length",)
    assert list(v.result) == ["completions/mean_length"] and v.result["completions/mean_length"] == {}


# --- data browser ---------------------------------------------------------------------------------------------------

def test_browser_reads_local_medmnist_files(tmp_path):
    write_fake_medmnist(tmp_path, "bloodmnist", n=3, rgb=True)
    assert browser_datasets(tmp_path)[-1] == "bloodmnist"
    v = browse_sample("bloodmnist", "test", 2, "knowledge", medmnist_dir=tmp_path)
    assert v.sample.dataset == "bloodmnist" and v.knowledge and v.knowledge in v.chat
    assert v.demonstration.endswith(f"<answer> {v.sample.answer} </answer>")
    with pytest.raises(FileNotFoundError, match="MedMNIST file not found"):
        browse_sample("pathmnist", medmnist_dir=tmp_path)


def test_data_browser_widget_follows_the_task(tmp_path):
    b = data_browser("synthmed-cells", "shuffled-knowledge")
    assert b.result.variant == "shuffled-knowledge" and b.result.knowledge
    b.controls["dataset"].value = "synthmed-lesion"      # one class: the shuffled control cannot apply
    assert b.result.variant == "plain" and list(b.controls["variant"].options) == variants_for(b.result.sample)
    b.controls["split"].value = "train"
    assert b.result.sample.id == "synthmed-lesion/train/0" and b.error is None
