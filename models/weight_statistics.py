"""The 14 statistics of a transformer's weights that training logs at every evaluation (`weights/...`)
and that `python -m analysis hmm` models as latent states of training (Hu, Chen, Saphra & Cho 2023,
"Latent State Models of Training Dynamics").

The matrices are, in every layer: each head's query, key and value matrix ([d_head, d_model]), the
attention output (`multi_head_merge`, [d, d]) and the two feed-forward matrices — cross-attention
included in a seq2seq decoder; embeddings, output map and LayerNorms are left out. Per matrix X:

    l1 = Σ|x|    l2 = ‖X‖_F    trace = Σ X_ii (main diagonal; X may be rectangular)
    spectral = σ_max    code_sparsity = l1 / l2    computational_sparsity = trace / spectral
    mean_singular_value, var_singular_value = mean and variance of σ (σ < 1e-5 counted as 0)

each averaged over the matrices; mean_w, median_w, var_w over all those matrices' entries together;
mean_b, median_b, var_b over the feed-forward biases together. As in Hu et al.'s code, variances have
Bessel's correction (divide by n - 1, torch.var's default) and the median of an even count is the lower
of the two middle values (torch.median). Runs logged by earlier versions of this module hold population
variances, smaller by a factor (n - 1) / n, and the mean of the two middle values as the median.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from layers import MultiHeadAttention, TransformerDecoderLayer, TransformerEncoderLayer

PREFIX = "weights/"
MATRIX_STATISTICS = ("l1", "l2", "trace", "spectral", "code_sparsity", "computational_sparsity",
                     "mean_singular_value", "var_singular_value")
ENTRY_STATISTICS = ("mean_w", "median_w", "var_w", "mean_b", "median_b", "var_b")
NAMES = tuple(PREFIX + name for name in MATRIX_STATISTICS + ENTRY_STATISTICS)  # as logged
SINGULAR_VALUE_FLOOR = 1e-5


def weight_matrices(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The matrices the statistics average over, as stacks of equal shape ([n, rows, cols]), and the
    feed-forward biases."""
    heads, merges, ff_in, ff_out, biases = [], [], [], [], []
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            d_head, d_model = module.d_head, module.data_to_q.in_features
            heads.append(module.data_to_q.weight.view(module.n_heads, d_head, d_model))
            # data_to_kv's rows are laid out per head as [key, value]
            heads.append(module.data_to_kv.weight.view(2 * module.n_heads, d_head, d_model))
            merges.append(module.multi_head_merge.weight[None])
        elif isinstance(module, (TransformerEncoderLayer, TransformerDecoderLayer)):
            ff_in.append(module.linear1.weight[None])
            ff_out.append(module.linear2.weight[None])
            biases += [module.linear1.bias, module.linear2.bias]
    stacks = [torch.cat(group).detach() for group in (heads, merges, ff_in, ff_out) if group]
    return stacks, [b.detach() for b in biases]


@torch.no_grad()
def weight_statistics(model: nn.Module) -> dict[str, float]:
    """The 14 statistics by their logged names (`weights/l1`, ...), computed where the model is."""
    stacks, biases = weight_matrices(model)
    per_matrix = torch.cat([_matrix_statistics(stack) for stack in stacks])  # [matrices, 8]
    entries = torch.cat([stack.flatten() for stack in stacks])
    bias_entries = torch.cat(biases)
    values = torch.cat([per_matrix.mean(0), _mean_median_var(entries), _mean_median_var(bias_entries)])
    return dict(zip(NAMES, values.tolist()))


def _matrix_statistics(x: torch.Tensor) -> torch.Tensor:
    """[n, 8]: the per-matrix statistics of a stack x [n, rows, cols], in MATRIX_STATISTICS order."""
    l1 = x.abs().sum((1, 2))
    l2 = torch.linalg.matrix_norm(x)
    trace = x.diagonal(dim1=1, dim2=2).sum(1)
    # Xᵀ has the singular values of X, and a tall matrix takes LAPACK a third of the time of a wide one
    sigma = torch.linalg.svdvals(x if x.shape[1] >= x.shape[2] else x.mT)
    sigma = torch.where(sigma < SINGULAR_VALUE_FLOOR, 0.0, sigma)
    spectral = sigma[:, 0]
    return torch.stack([l1, l2, trace, spectral, l1 / l2, trace / spectral,
                        sigma.mean(1), sigma.var(1)], dim=1)


def _mean_median_var(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x.mean(), x.median(), x.var()])
