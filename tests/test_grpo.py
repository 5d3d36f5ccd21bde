"""vrft_aug.grpo: property tests of the pieces, and the from-scratch loss against TRL's GRPOTrainer.compute_loss."""
import sys
from pathlib import Path
import pytest, torch
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from vrft_toy import length_reward, base_args  # noqa: E402
from vrft_aug.grpo import (group_advantages, completion_mask, importance_ratio, clipped_surrogate, k3_kl,  # noqa: E402
                           aggregate_loss, grpo_loss, compare_with_trl, LOSS_TYPES, SCALE_REWARDS)

finite = st.floats(-10, 10, allow_nan=False, width=32)

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(2, 6), st.data())
def test_advantages_properties(n_groups, G, data):
    r = torch.tensor(data.draw(st.lists(finite, min_size=n_groups * G, max_size=n_groups * G)))
    groups = r.view(n_groups, G)
    none = group_advantages(r, G, "none").view(n_groups, G)
    torch.testing.assert_close(none, groups - groups.mean(1, keepdim=True), atol=1e-4, rtol=1e-5)
    grp = group_advantages(r, G, "group").view(n_groups, G)
    torch.testing.assert_close(grp, none / (groups.std(1, keepdim=True) + 1e-4), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(group_advantages(r, G, "batch"), none.reshape(-1) / (r.std() + 1e-4), atol=1e-4, rtol=1e-4)
    # permuting completions inside a group permutes their advantages
    perm = torch.randperm(G)
    torch.testing.assert_close(group_advantages(groups[:, perm].reshape(-1), G, "group").view(n_groups, G), grp[:, perm])

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 9), st.data())
def test_completion_mask_is_prefix_through_first_eos(B, C, data):
    ids = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, 4), min_size=C, max_size=C), min_size=B, max_size=B)))
    m = completion_mask(ids, [3, 4])
    for row, mrow in zip(ids.tolist(), m.tolist()):
        first = next((i for i, t in enumerate(row) if t in (3, 4)), C - 1)
        assert mrow == [1] * (first + 1) + [0] * (C - first - 1)

@settings(max_examples=60, deadline=None)
@given(st.floats(0.05, 5), st.floats(-3, 3), st.floats(0.0, 0.5), st.floats(0.0, 0.5))
def test_clipped_surrogate_is_pessimistic(rho, A, eps_low, eps_high):
    loss = clipped_surrogate(torch.tensor([[rho]]), torch.tensor([A]), eps_low, eps_high).item()
    assert loss >= -rho * A - 1e-5                         # never better than the unclipped objective
    if 1 - eps_low <= rho <= 1 + eps_high: assert abs(loss + rho * A) < 1e-5

@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=20), st.lists(finite, min_size=1, max_size=20))
def test_k3_nonnegative(a, b):
    n = min(len(a), len(b))
    assert (k3_kl(torch.tensor(a[:n]), torch.tensor(b[:n])) >= -1e-6).all()

def test_sequence_ratio_is_geometric_mean_and_grpo_onpolicy_zero():
    lp, old = torch.tensor([[0.2, -0.4, 5.0]]), torch.zeros(1, 3)
    m = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(importance_ratio(lp, old, m, "sequence"), torch.tensor([[torch.tensor(-0.1).exp()]]))
    adv = group_advantages(torch.tensor([1., 0., 0., 1.]), 4)
    mask = torch.ones(4, 5)
    assert abs(grpo_loss(-torch.rand(4, 5), adv, mask, loss_type="grpo").item()) < 1e-6
    with pytest.raises(ValueError, match="expected one of"): aggregate_loss(torch.ones(1, 2), torch.ones(1, 2), "vespo")

# --- equivalence with TRL -------------------------------------------------------------------------------------------


def _trainer(tiny, tmp_path, **kw):
    from trl import GRPOConfig, GRPOTrainer
    d, proc, ds = tiny
    args = GRPOConfig(**base_args(tmp_path, epsilon=0.2, epsilon_high=0.28, **kw))
    return GRPOTrainer(model=str(d), reward_funcs=[length_reward], args=args, train_dataset=ds, processing_class=proc)

EOS_AT = [2, 5, 11, 7, 3, 9, 1, 6]

@pytest.mark.parametrize("beta", [0.0, 0.1])
@pytest.mark.parametrize("num_iterations", [1, 2])
def test_loss_equals_trl_every_loss_type(tiny, tmp_path, beta, num_iterations):
    tr = _trainer(tiny, tmp_path, beta=beta, num_iterations=num_iterations)
    rows = [tiny[2][i] for i in [0, 0, 0, 0, 1, 1, 1, 1]]
    cases = [(lt, "token") for lt in LOSS_TYPES if lt != "luspo"] + [("grpo", "sequence"), ("luspo", "sequence")]
    for lt, level in cases:
        tr.loss_type, tr.importance_sampling_level = tr.args.loss_type, tr.args.importance_sampling_level = lt, level
        r = compare_with_trl(tr, rows, EOS_AT, perturb=0.05 if num_iterations > 1 else 0.0)
        assert r["loss_diff"] < 1e-5, (lt, level, r)
        assert r["grad_diff"] < 1e-5 * max(1.0, r["grad_scale"]), (lt, level, r)
        assert r["adv_diff"] < 1e-5, (lt, level, r)
        if num_iterations > 1 and lt == "bnpo": assert abs(r["trl"]) > 1e-3   # not a comparison of zeros

@pytest.mark.parametrize("scale_rewards", SCALE_REWARDS)
def test_advantages_equal_trl(tiny, tmp_path, scale_rewards):
    tr = _trainer(tiny, tmp_path, scale_rewards=scale_rewards)
    r = compare_with_trl(tr, [tiny[2][i] for i in [0, 0, 0, 0, 2, 2, 2, 2]], EOS_AT)
    assert r["adv_diff"] < 1e-5 and r["loss_diff"] < 1e-5, r

@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_gradient_accumulation_normalisation_equals_trl(tiny, tmp_path, loss_type):
    # 2 accumulation steps (and so 2 generation steps): TRL divides grpo-type losses by 2 and rescales dapo's N
    tr = _trainer(tiny, tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2, loss_type=loss_type)
    rows = [tiny[2][i] for i in [0, 0, 0, 0, 3, 3, 3, 3]]
    r = compare_with_trl(tr, rows, EOS_AT)
    assert r["loss_diff"] < 1e-5 and r["grad_diff"] < 1e-5 * max(1.0, r["grad_scale"]), r
