"""Many seeds in one process: `--seeds 42,43,44` trains S independent LMs with vectorised math.

Each seed is a full single-seed Trainer (same initial weights, batch order, run directory,
metrics, W&B run and checkpoints as `--seed N` alone). Training stacks the S models' parameters
(torch.func) and runs forward, backward, clipping and AdamW on [S, ...] tensors; evaluation and
checkpoints copy each seed's slice back into its own Trainer, so a seed's checkpoint resumes like
any other. Dropout masks are the only difference from single-seed runs: they come from one stream.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings

import torch
from torch.func import functional_call, stack_module_state, vmap

from collate import Batch, collate
from config import Config, seed_args
from data_utils.load import load_task
from interfaces.language_model import LanguageModelInterface
from training_utils import Trainer, make_optimizer, make_scheduler, train_runs, training_precision
from util import HierGenError


def seed_config(cfg: Config, seed: int) -> Config:
    """The single-seed run of `seed`: its own seed, run directory and W&B run name, recorded as
    that run's command line would record them (so that it can continue as a single-seed run)."""
    args = seed_args(cfg.args, seed)
    train = dataclasses.replace(cfg.train, seed=seed, seeds=(), save_prefix=args["save_prefix"],
                                run_name=args["run_name"])
    return dataclasses.replace(cfg, train=train, args=args)


def set_scheduled_lr(optimizer: torch.optim.Optimizer, scheduler) -> None:
    """A schedule's loaded state does not reach its optimizer: set the lr it says for this step."""
    for group in optimizer.param_groups:
        group["lr"] = scheduler.get_last_lr()[0]


class MultiSeedTrainer:
    """S Trainers whose models train as one stack of parameters."""

    def __init__(self, cfg: Config):
        if cfg.model.family != "lm" or cfg.model.gated_model:
            raise HierGenError("--seeds trains LMs (plain or prefix) only")
        self.cfg = cfg
        task = load_task(cfg.data, list(cfg.train.eval_keys))
        self.trainers = [Trainer(seed_config(cfg, s), task) for s in cfg.train.seeds]
        if len({t.step for t in self.trainers}) > 1:
            raise HierGenError("the seeds' run directories resume from different steps")
        self.step = self.trainers[0].step
        models = [t.model for t in self.trainers]
        params, self.buffers = stack_module_state(models)
        self.names = list(params)
        self.params = [params[n] for n in self.names]
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture; weights come stacked
        t = cfg.train
        self.optimizer = make_optimizer(models[0], t.lr, t.weight_decay, self.params)
        self.scheduler = make_scheduler(self.optimizer, t.num_warmup_steps, t.max_train_steps, t.no_decay_lr)
        self.scheduler.load_state_dict(self.trainers[0].scheduler.state_dict())
        set_scheduled_lr(self.optimizer, self.scheduler)
        self._stack_optimizer_state()
        self.device = self.trainers[0].device
        self.n_classes = len(task.vocab) + 2

    def run(self) -> None:
        self.base.train()
        train_runs(self.trainers, self._logged_step, self._unstack)

    def _logged_step(self) -> list[tuple[int, float, dict[str, torch.Tensor]]]:
        """One update; each seed's entry to log (the single-seed Trainer's)."""
        lr = self.scheduler.get_last_lr()[0]
        losses, norms = self._train_step()
        return [(self.step, lr, {"loss": loss, "grad_norm": norm}) for loss, norm in zip(losses, norms)]

    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of every seed, each on its own next batch; returns [S] losses and grad norms."""
        seqs = [[t.train_seqs[i] for i in t.sampler.next_indices()] for t in self.trainers]
        S, B = len(seqs), len(seqs[0])
        batch = collate([s for group in seqs for s in group], self.n_classes).to(self.device)
        stacked = [x.view(S, B, *x.shape[1:]) for x in (batch.inputs, batch.targets, batch.lengths, batch.prefix_len)]
        with warnings.catch_warnings():
            # On the CPU, vmap runs attention seed by seed (no batching rule for its kernel); it says
            # so at every step. The position-wise work, most of the FLOPs, is still batched.
            warnings.filterwarnings("ignore", message="There is a performance drop")
            with training_precision(self.cfg, self.device):
                losses = vmap(self._seed_loss, randomness="different")(self.params, self.buffers, *stacked)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # the seeds share no parameter: each gets its own gradient
        norms = self._clip()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        for trainer in self.trainers:
            trainer.step = self.step
        return losses.detach(), norms

    def _seed_loss(self, params: list[torch.Tensor], buffers: dict, inputs: torch.Tensor,
                   targets: torch.Tensor, lengths: torch.Tensor, prefix_len: torch.Tensor) -> torch.Tensor:
        """One seed's LM loss on its batch, with the single-seed objective."""
        weights = {**dict(zip(self.names, params)), **buffers}

        def model(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            # Packing sizes tensors by the data, which vmap cannot batch: the padded path instead.
            return functional_call(self.base, weights, (x, n), {"pack": False})

        t = self.cfg.train
        interface = LanguageModelInterface(model, prefix_lm=t.is_prefix_lm, label_smoothing=t.label_smoothing)
        no_target = torch.full_like(lengths, -1)
        batch = Batch(inputs, targets, lengths, prefix_len, eval_pos=no_target, eval_gold=no_target,
                      eval_candidates=torch.ones(1, dtype=torch.bool), eval_answers=no_target[:, None])
        return interface(batch).loss

    def _clip(self) -> torch.Tensor:
        """Per-seed total gradient norm before clipping (logged); clip each seed to max_grad_norm."""
        grads = [p.grad for p in self.params]
        norms = torch.linalg.vector_norm(torch.stack([g.flatten(1).norm(dim=1) for g in grads]), dim=0)
        max_norm = self.cfg.train.max_grad_norm
        if max_norm > 0:
            scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(scale.view(-1, *[1] * (g.ndim - 1)))
        return norms

    def _unstack(self) -> None:
        """Copy each seed's weights, optimizer and schedule state into its own Trainer."""
        with torch.no_grad():
            for s, trainer in enumerate(self.trainers):
                own = dict(trainer.model.named_parameters())
                for name, stacked in zip(self.names, self.params):
                    own[name].copy_(stacked[s])
                    if stacked in self.optimizer.state:
                        trainer.optimizer.state[own[name]] = {
                            k: v.clone() if k == "step" else v[s].clone()
                            for k, v in self.optimizer.state[stacked].items()}
                trainer.scheduler.load_state_dict(self.scheduler.state_dict())
                set_scheduled_lr(trainer.optimizer, trainer.scheduler)

    def _stack_optimizer_state(self) -> None:
        """Resumed seeds: their AdamW moments become the stacked optimizer's."""
        per_seed = [dict(t.model.named_parameters()) for t in self.trainers]
        for name, stacked in zip(self.names, self.params):
            states = [t.optimizer.state.get(own[name]) for t, own in zip(self.trainers, per_seed)]
            if all(states):
                self.optimizer.state[stacked] = {
                    k: states[0][k].clone() if k == "step" else torch.stack([st[k] for st in states])
                    for k in states[0]}

