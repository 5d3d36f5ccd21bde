"""VRFT-Aug: medical visual reinforcement fine-tuning (GRPO) with perception and reasoning augmentation, literate and runnable on a laptop

Modules:

- `vrft_aug.data`: SynthMed (procedural, perceivable by a tiny VLM), MedMNIST from local `.npz` files, Hugging Face datasets and image folders, all as lazy sequences of `Sample`, plus the conversion to TRL's VLM dataset format.
- `vrft_aug.grpo`: Group-relative advantages, per-token log-probabilities, the clipped surrogate, the k3 KL and the loss aggregations of TRL's `GRPOTrainer`, as small pure-torch functions, checked against TRL to 1e-5.
- `vrft_aug.imitation`: Demonstrations (knowledge-grounded rationale + right answer), the imitation loss (token NLL on them), `VRFTTrainer` = TRL's `GRPOTrainer` + mu x imitation, and the SFT baseline / warm start through TRL's `SFTTrainer`.
- `vrft_aug.knowledge`: Per-dataset knowledge bases (class descriptions, display names, aliases), loaded and validated from YAML; a shuffled control; per-class token budgets; and a generator that asks any chat model to write a knowledge file.
- `vrft_aug.matching`: Answer normalisation, class and alias matching, option letters read from the prompt, grades: how the rewards and the evaluation read an answer.
- `vrft_aug.prompts`: One place that turns a sample (and a knowledge base) into chat messages for a named variant: `plain` (V-RFT), `knowledge` (PA_p), `shuffled-knowledge` (control), `grading`, `localization`, `no-think`; wording kept as data.
- `vrft_aug.shared`: A GRPO batch holds every prompt G times. Processing the prompt, encoding the image and prefilling the prompt's KV cache give the same result for all G copies, so they are done once per group and the result is repeated."""

__version__ = "0.1.0"
