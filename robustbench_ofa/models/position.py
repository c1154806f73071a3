"""OFA's relative-position bucket tables.

These index tables are pure functions of the config. Released checkpoints store copies whose sizes differ
between releases, so the model always recomputes them and never loads them from a file.
"""

from __future__ import annotations

import math

import torch


def token_bucket_positions(bucket_size: int, max_position: int = 1024) -> torch.Tensor:
    """1-D bucketed relative positions for text (OFA's log-bucketing beyond ``bucket_size // 2``).

    Returns a (max_position, max_position) LongTensor of indices into a table of
    ``2 * bucket_size - 1`` rows.
    """
    ctx = torch.arange(max_position, dtype=torch.long)[:, None]
    mem = torch.arange(max_position, dtype=torch.long)[None, :]
    rel = ctx - mem
    sign = torch.sign(rel)
    mid = bucket_size // 2
    near = (rel < mid) & (rel > -mid)
    abs_pos = torch.where(near, torch.full_like(rel, mid - 1), rel.abs())
    log_pos = torch.ceil(torch.log(abs_pos / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    log_pos = log_pos.int()
    bucket = torch.where(abs_pos.le(mid), rel, log_pos * sign).long()
    return bucket + bucket_size - 1


def image_num_relative_distance(bucket_size: int) -> int:
    """Rows of the 2-D relative-position table: every (dy, dx) pair plus three special entries."""
    return (2 * bucket_size - 1) ** 2 + 3


def image_bucket_positions(bucket_size: int) -> torch.Tensor:
    """2-D relative positions between the cells of a ``bucket_size`` x ``bucket_size`` grid.

    Index 0 is reserved (a "cls"-like slot in OFA's layout); cells are numbered ``row * bucket_size +
    col + 1``. Returns a (bucket_size**2 + 1) square LongTensor.
    """
    n_rel = image_num_relative_distance(bucket_size)
    ys, xs = torch.meshgrid(torch.arange(bucket_size), torch.arange(bucket_size), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # 2, N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()  # N, N, 2
    rel[:, :, 0] += bucket_size - 1
    rel[:, :, 1] += bucket_size - 1
    rel[:, :, 0] *= 2 * bucket_size - 1
    size = bucket_size * bucket_size + 1
    index = torch.zeros((size, size), dtype=rel.dtype)
    index[1:, 1:] = rel.sum(-1)
    index[0, 0:] = n_rel - 3
    index[0:, 0] = n_rel - 2
    index[0, 0] = n_rel - 1
    return index


def image_grid_ids(h: int, w: int, bucket_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Position ids (row * bucket_size + col + 1) of an h x w patch grid, flattened row-major."""
    ids = torch.arange(w, device=device)[None, :] + torch.arange(h, device=device)[:, None] * bucket_size + 1
    return ids.reshape(-1)


def code_image_position_ids(code_image_size: int, bucket_size: int, max_len: int = 1025) -> torch.Tensor:
    """Decoder position ids for image-code tokens (image generation), as OFA lays them out."""
    window = code_image_size // 8
    grid = image_grid_ids(window, window, bucket_size)
    ids = torch.cat([torch.tensor([0]), grid])
    pad = max(0, max_len - ids.numel())
    return torch.cat([ids, torch.full((pad,), 1024, dtype=ids.dtype)])
