"""A `VRFTTrainer` that, at every `compute_loss`, also computes the imitation loss the way it was computed before it
scored each distinct row once (every row of the micro-batch scored, unweighted) and records both losses and the
largest gap between the two gradients, for tests/test_shared.py and tests/scripts/dist_dedup.py."""
import torch
from trl import GRPOTrainer
from vrft_aug.imitation import VRFTTrainer, imitation_loss

def every_row_loss(tr, model, inputs, num_items_in_batch=None):
    "GRPO loss + mu x the imitation loss with all rows of the micro-batch scored (no de-duplication)."
    loss = GRPOTrainer.compute_loss(tr, model, inputs, num_items_in_batch=num_items_in_batch)
    logps, mask = tr.imitation_logps(model, inputs), inputs["demo_completion_mask"]
    n = inputs["demo_num_items"].clamp(min=1.0) / tr.accelerator.num_processes
    if tr.model.training: n = n * tr.current_gradient_accumulation_steps / tr.args.steps_per_generation
    return loss + tr.args.imitation_coef * imitation_loss(logps, mask, num_items=n)

class CheckedVRFTTrainer(VRFTTrainer):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.records = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ours = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        ref = every_row_loss(self, model, inputs, num_items_in_batch)
        params = [p for p in model.parameters() if p.requires_grad]
        ga = torch.autograd.grad(ours, params, retain_graph=True, allow_unused=True)
        gb = torch.autograd.grad(ref, params, retain_graph=True, allow_unused=True)
        zero = lambda g, p: torch.zeros_like(p) if g is None else g
        gaps = [(zero(a, p) - zero(b, p)).abs().max().item() for a, b, p in zip(ga, gb, params)]
        self.records.append(dict(loss=ours.item(), every_row_loss=ref.item(), grad_gap=max(gaps),
                                 grad_max=max(zero(a, p).abs().max().item() for a, p in zip(ga, params)),
                                 rows=inputs["prompt_ids"].size(0), distinct=len(set(inputs["demo_group"].tolist()))))
        return ours
