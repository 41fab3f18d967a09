"""Many seeds in one process: `--seeds 42,43,44` trains S independent LMs with vectorised math.

Each seed is a full single-seed Run (same initial weights, batch order, run directory, metrics,
W&B run and checkpoints as `--seed N` alone). Training stacks the S models' parameters
(torch.func) and runs forward, backward, clipping and AdamW on [S, ...] tensors; before
evaluation and checkpoints `unstack` copies each seed's slice back into its own Run, so a seed's
checkpoint resumes like any other. Dropout masks are the only difference from single-seed runs:
they come from one stream.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch.func import functional_call, stack_module_state, vmap

from collate import TokenBatch, collate
from config import Config
from interfaces import make_objective
from training_utils import (Run, StepRecord, clip_gradients, make_optimizer, make_scheduler, set_scheduled_lr,
                            training_precision)


class StackedRuns:
    """The models of S runs as one stack of parameters, updated together by `train_step`."""

    def __init__(self, runs: list[Run], cfg: Config):
        self.runs, self.cfg = runs, cfg
        models = [run.model for run in runs]
        params, self.buffers = stack_module_state(models)
        self.names = list(params)
        self.params = [params[n] for n in self.names]
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture; weights come stacked
        self.base.train()
        self.optimizer = make_optimizer(models[0], cfg.train.lr, cfg.train.weight_decay, self.params)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.scheduler.load_state_dict(runs[0].scheduler.state_dict())
        set_scheduled_lr(self.optimizer, self.scheduler)
        self._stack_optimizer_state()
        self.device = runs[0].device
        self.n_classes = len(runs[0].task.vocab) + 2

    def train_step(self) -> list[StepRecord]:
        """One update of every seed, each on its own next batch; each seed's record to log."""
        seqs = [run.next_batch() for run in self.runs]
        S, B = len(seqs), len(seqs[0])
        batch = collate([s for group in seqs for s in group], self.n_classes).to(self.device)
        stacked = [x.view(S, B, *x.shape[1:]) for x in (batch.inputs, batch.targets, batch.lengths, batch.prefix_len)]
        lr = self.scheduler.get_last_lr()[0]
        with warnings.catch_warnings():
            # On the CPU, vmap runs attention seed by seed (no batching rule for its kernel); it says
            # so at every step. The position-wise work, most of the FLOPs, is still batched.
            warnings.filterwarnings("ignore", message="There is a performance drop")
            with training_precision(self.cfg, self.device):
                losses = vmap(self._seed_loss, randomness="different")(self.params, self.buffers, *stacked)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # the seeds share no parameter: each gets its own gradient
        norms = clip_gradients([p.grad for p in self.params], self.cfg.train.max_grad_norm, stacked=True)
        self.optimizer.step()
        self.scheduler.step()
        for run in self.runs:
            run.step += 1
        return [StepRecord(run.step, lr, {"loss": loss, "grad_norm": norm})
                for run, loss, norm in zip(self.runs, losses.detach(), norms)]

    def _seed_loss(self, params: list[torch.Tensor], buffers: dict, inputs: torch.Tensor,
                   targets: torch.Tensor, lengths: torch.Tensor, prefix_len: torch.Tensor) -> torch.Tensor:
        """One seed's LM loss on its batch, with the single-seed objective."""
        weights = {**dict(zip(self.names, params)), **buffers}

        def model(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            # Packing sizes tensors by the data, which vmap cannot batch: the padded path instead.
            return functional_call(self.base, weights, (x, n), {"pack": False})

        objective = make_objective(self.cfg.model, model, self.cfg.objective)
        return objective(TokenBatch(inputs, targets, lengths, prefix_len)).loss

    def unstack(self) -> None:
        """Copy each seed's weights, optimizer and schedule state into its own Run."""
        with torch.no_grad():
            for s, run in enumerate(self.runs):
                own = dict(run.model.named_parameters())
                for name, stacked in zip(self.names, self.params):
                    own[name].copy_(stacked[s])
                    if stacked in self.optimizer.state:
                        run.optimizer.state[own[name]] = {
                            k: v.clone() if k == "step" else v[s].clone()
                            for k, v in self.optimizer.state[stacked].items()}
                run.scheduler.load_state_dict(self.scheduler.state_dict())
                set_scheduled_lr(run.optimizer, run.scheduler)

    def _stack_optimizer_state(self) -> None:
        """Resumed seeds: their AdamW moments become the stacked optimizer's."""
        per_seed = [dict(run.model.named_parameters()) for run in self.runs]
        for name, stacked in zip(self.names, self.params):
            states = [run.optimizer.state.get(own[name]) for run, own in zip(self.runs, per_seed)]
            if all(states):
                self.optimizer.state[stacked] = {
                    k: states[0][k].clone() if k == "step" else torch.stack([st[k] for st in states])
                    for k in states[0]}
