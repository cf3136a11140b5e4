"""Training on several processes, one per GPU, started by ``torchrun``.

    torchrun --nproc_per_node=4 -m muselens train DATA --out RUN --device cuda
    python -m torch.distributed.run --nproc_per_node=2 -m muselens train DATA --out RUN --device cpu

``muselens train`` sees torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and builds a :class:`Distributed` context: NCCL and GPU
``LOCAL_RANK`` for ``--device cuda``, gloo on the CPU for ``--device cpu``. Without that
environment the context is the single process (:meth:`Distributed.single`), whose helpers do
nothing, and training runs exactly the code it always ran.

What each rank does, and why the result equals (or only resembles) one process's:

* Every rank holds the whole model, builds it from the same seed and starts from rank 0's
  weights (:meth:`broadcast_module`). Every rank loads the museum and computes the frozen
  trunk's cache itself (the data must be readable on every node).
* Gradients: each rank back-propagates its images' losses, each already weighted by
  ``1 / images in the whole step``, and :meth:`sync_gradients` sums them over the ranks before
  the identical optimiser step on every rank, so the weights never diverge. We all-reduce by
  hand instead of wrapping the model in ``DistributedDataParallel`` because (i) stages 2 and 3
  accumulate a variable number of backward passes per step and per rank (one image per pass;
  the last step's shard may be empty on some ranks), which DDP only allows through ``no_sync``
  and ``Join``; (ii) the trained code runs through ``logits``, ``dense_logits`` and
  ``forward_features``, not the ``forward`` DDP hooks; (iii) DDP averages over ranks, while
  uneven shards need the sum of per-rank partial sums. The price is no overlap of the one
  all-reduce per step with the backward pass, small for the few top blocks that learn.
* Stage 1 (augmented batches): the epoch's seeded order is cut into the same batches of
  ``batch_size`` as on one process, and each batch is split across ranks (``shard``).
  Augmentation draws are a function of ``(seed, epoch, item)``, not of the rank, so every
  image is augmented as on one process. Not exact: the retrained blocks' BatchNorm normalises
  by the statistics of each rank's part of the batch (a batch of B on N ranks: B/N images per
  normalisation), and the mean of the ranks' variances misses the spread between their means.
  Running statistics are averaged over the ranks at the end of each epoch
  (:meth:`average_buffers`), which keeps the ranks identical; as their update is a linear
  moving average, that equals averaging them after every step (a rank whose share of a last,
  short batch is empty skips one update). Statistically equivalent only.
* Stage 2 (one image per micro-batch, BatchNorm frozen): the images of each accumulated step
  are split across ranks; the summed gradient is the single-process one in exact arithmetic
  (only the order of the float additions differs).
* Stage 3: the descriptors mined before each pass are computed in shards and gathered
  (:meth:`map_rows`), so every rank mines the same triplets; each step's images are split
  across ranks, their descriptors gathered, the loss computed on every rank, and each rank
  back-propagates its images' share (gradient caching, or its own graph spliced into the
  gathered descriptors); summed as above. Exact, like stage 2 (BatchNorm frozen, nothing random).
* Only rank 0 writes (checkpoints, history, curves, model files) and prints progress. On
  ``--resume`` every rank reads the same checkpoint, then all wait at a barrier before rank 0
  may replace it; across nodes ``--out`` must be on a filesystem every node sees. At the end
  the ranks compare weight checksums (:meth:`check_same`) and fail loudly if they differ.

``batch_size`` (stage 1), ``images_per_step`` (stage 2) and ``triplets_per_step`` (stage 3) stay
the sizes of the whole step, summed over the ranks: N processes divide each step's work by N
and leave the optimisation as configured. Per-epoch loss and accuracy count every rank's images.
The trunk cache and the optional PCA start are computed on every rank (once per run).
"""

from __future__ import annotations

from muselens.core import checks
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """True when ``env`` (default ``os.environ``) holds torchrun's variables; a partial set is an error."""
    env = os.environ if env is None else env
    present = [k for k in TORCHRUN_ENV if k in env]
    if not present:
        return False
    missing = [k for k in TORCHRUN_ENV if k not in env]
    if missing:
        raise ValueError(f"the environment sets {present} but not {missing}: start several processes "
                         "with torchrun (or python -m torch.distributed.run), which sets all of them")
    return True


def state_checksum(state: Mapping[str, Any]) -> str:
    """SHA-256 of a (nested) state dict: keys, dtypes, shapes and the bytes of every tensor.
    Equal checksums mean bit-identical weights, which is what every rank must hold."""
    digest = hashlib.sha256()

    def feed(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key in sorted(value):
                feed(f"{prefix}.{key}", value[key])
        elif isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            digest.update(f"{prefix}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{prefix}={value!r}".encode())

    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping (a state dict), got {type(state).__name__}")
    feed("", state)
    return digest.hexdigest()


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"{name}={env[name]!r} is not an integer") from None


@dataclass(frozen=True)
class Distributed:
    """Who this process is among the ranks of a run, and the collectives training needs.

    The default (and :meth:`single`) is one process: every helper returns its input unchanged
    (``shard`` keeps every item) and nothing touches ``torch.distributed``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        for name in ("rank", "world_size", "local_rank"):
            value = getattr(self, name)
            checks.integer(value, name, low=0)
        if self.world_size < 1 or self.rank >= self.world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {self.rank} of {self.world_size}")
        if not isinstance(self.device, torch.device):
            raise TypeError(f"device must be a torch.device, got {type(self.device).__name__}")
        if self.world_size > 1 and not (dist.is_available() and dist.is_initialized()):
            raise ValueError("a Distributed context of several ranks needs an initialised process group: "
                             "build it with Distributed.from_env()")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def single(cls, device: torch.device | str = "cpu") -> Distributed:
        return cls(0, 1, 0, torch.device(device))

    @classmethod
    def from_env(cls, device: str, env: Mapping[str, str] | None = None) -> Distributed:
        """The context torchrun describes in ``env`` (default ``os.environ``), process group joined.

        ``device`` is ``"cpu"`` (gloo) or ``"cuda"`` (NCCL, GPU ``LOCAL_RANK``). Without torchrun's
        variables, or with ``WORLD_SIZE=1``, the single-process context on ``device``.
        """
        env = os.environ if env is None else env
        kind = torch.device(device).type
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"distributed training runs on cpu or cuda, got device {device!r}")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
        if not launched_by_torchrun(env):
            return cls.single(device)
        rank, world, local = (_env_int(env, k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
        if local < 0:
            raise ValueError(f"LOCAL_RANK={local} must be >= 0")
        if world == 1:
            return cls.single(device)
        if kind == "cuda":
            if local >= torch.cuda.device_count():
                raise ValueError(f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} CUDA "
                                 "device(s): start at most that many processes per node")
            here = torch.device("cuda", local)
            torch.cuda.set_device(here)
        else:
            here = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if kind == "cuda" else "gloo", init_method="env://",
                                    rank=rank, world_size=world)
        return cls(rank, world, local, here)

    def destroy(self) -> None:
        """Leave the process group (call once, at the end; a no-op for one process)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    # -- who -------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0

    # -- work sharing ----------------------------------------------------------------------
    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: ``items[rank::world_size]`` (a deterministic split;
        shares differ by at most one item and may be empty when there are fewer items than ranks)."""
        return list(items)[self.rank::self.world_size]

    def map_rows(self, n: int, fn: Callable[[int], torch.Tensor | tuple[torch.Tensor, ...]]):
        """``cat([fn(i) for i in range(n)])`` on every rank, each rank computing its ``shard``.

        ``fn(i)`` returns one row ``(1, ...)`` per item, or a tuple of such rows; the result has
        the same structure, rows in item order, on the device of ``fn``'s output.
        """
        checks.integer(n, "n", low=0)
        positions = list(range(self.rank, n, self.world_size))
        local = [fn(i) for i in positions]
        single = bool(local) and isinstance(local[0], torch.Tensor)
        parts = [(out,) if isinstance(out, torch.Tensor) else tuple(out) for out in local]
        for out in parts:
            if any(not isinstance(t, torch.Tensor) or t.ndim < 1 or t.shape[0] != 1 for t in out):
                raise ValueError("map_rows: fn(i) must return a (1, ...) tensor or a tuple of them")
        if not self.enabled:
            if not parts:
                raise ValueError("map_rows needs at least one item")
            columns = [torch.cat(col) for col in zip(*parts)]
            return columns[0] if single else tuple(columns)
        # Ranks without items learn the rows' shapes, dtypes and structure from the others.
        # Device types travel, not devices: rank r's "cuda" is its own GPU.
        layout = (single, [(tuple(t.shape[1:]), t.dtype, t.device.type) for t in parts[0]]) if parts else None
        layouts: list[Any] = [None] * self.world_size
        dist.all_gather_object(layouts, layout)
        known = next((x for x in layouts if x is not None), None)
        if known is None:
            raise ValueError("map_rows needs at least one item")
        single, specs = known
        columns = []
        for c, (trailing, dtype, kind) in enumerate(specs):
            here = self.device if kind == self.device.type else torch.device(kind)
            mine = (torch.cat([out[c] for out in parts]) if parts
                    else torch.empty((0, *trailing), dtype=dtype, device=here))
            columns.append(self.all_gather_tensor(mine))
        # Gathered rows come rank by rank: positions r, r + w, ... of each rank r in turn.
        order = torch.tensor([i for r in range(self.world_size) for i in range(r, n, self.world_size)])
        out = []
        for col in columns:
            ordered = torch.empty_like(col)
            ordered[order.to(col.device)] = col
            out.append(ordered)
        return out[0] if single else tuple(out)

    # -- collectives -----------------------------------------------------------------------
    def _to_comm(self, tensor: torch.Tensor) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
        return tensor.detach().to(self.device).clone()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the ranks (a new tensor on ``tensor``'s device)."""
        if not self.enabled:
            return self._to_comm(tensor).to(tensor.device)
        out = self._to_comm(tensor)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(tensor.device)

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of a floating ``tensor`` over the ranks (a new tensor on ``tensor``'s device)."""
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise TypeError("all_reduce_mean needs a floating-point tensor")
        return self.all_reduce_sum(tensor) / self.world_size

    def all_gather_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` concatenated along dim 0, in rank order.

        First dimensions may differ (zero included): each rank pads to the largest, gathers,
        and the padding is cut off with the sizes gathered first. The other dimensions and
        the dtype must agree on every rank.
        """
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 1:
            raise ValueError("all_gather_tensor needs a tensor with at least one dimension")
        if not self.enabled:
            return self._to_comm(tensor).to(tensor.device)
        specs: list[Any] = [None] * self.world_size
        dist.all_gather_object(specs, (tensor.shape[0], tuple(tensor.shape[1:]), str(tensor.dtype)))
        if len({s[1:] for s in specs}) != 1:
            raise ValueError(f"all_gather_tensor: trailing shapes and dtypes differ across ranks: {specs}")
        sizes = [s[0] for s in specs]
        longest = max(sizes)
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=self.device)
        padded[:tensor.shape[0]] = tensor.detach().to(self.device)
        slots = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(slots, padded)
        return torch.cat([slot[:size] for slot, size in zip(slots, sizes)]).to(tensor.device)

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def broadcast_object(self, obj: T, src: int = 0) -> T:
        """Rank ``src``'s ``obj`` (picklable) on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    # -- model state -----------------------------------------------------------------------
    def check_same(self, state: Mapping[str, Any]) -> str:
        """The :func:`state_checksum` of ``state``, after checking every rank holds the same;
        ranks that drifted apart mean a bug in the sharing, so this raises RuntimeError."""
        digest = state_checksum(state)
        if self.enabled:
            digests: list[Any] = [None] * self.world_size
            dist.all_gather_object(digests, digest)
            if len(set(digests)) != 1:
                raise RuntimeError(f"the ranks' weights differ (checksums by rank: {digests})")
        return digest

    def broadcast_module(self, module: nn.Module, src: int = 0) -> None:
        """Copy rank ``src``'s parameters and buffers into ``module`` on every rank, in place."""
        if not self.enabled:
            return
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                data = tensor.data.to(self.device)
                dist.broadcast(data, src=src)
                tensor.data.copy_(data)

    def average_buffers(self, modules: Iterable[nn.Module]) -> None:
        """Average floating buffers (BatchNorm running statistics) over the ranks, in place;
        integer buffers (``num_batches_tracked``) take rank 0's value."""
        if not self.enabled:
            return
        with torch.no_grad():
            for module in modules:
                for buffer in module.buffers():
                    if buffer.is_floating_point():
                        buffer.copy_(self.all_reduce_mean(buffer))
                    else:
                        data = buffer.to(self.device)
                        dist.broadcast(data, src=0)
                        buffer.copy_(data)

    def sync_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Sum over the ranks the gradients of every parameter ``optimizer`` steps, in place.

        Each rank's gradient must already be its share of the whole step's (weighted by
        ``1 / items in the step``), so the sum is the one-process gradient. One flat
        all-reduce; a parameter whose gradient is ``None`` on every rank stays ``None`` (the
        optimiser then skips it, as on one process), one that has a gradient on some rank
        only gets zeros elsewhere before the sum.
        """
        if not self.enabled:
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not params:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).to(self.device)
                          for p in params]
                         + [torch.tensor([float(p.grad is not None) for p in params], device=self.device,
                                         dtype=params[0].dtype)])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flags = flat[-len(params):]
        offset = 0
        for p, flag in zip(params, flags.tolist()):
            n = p.numel()
            if flag > 0:
                summed = flat[offset:offset + n].view_as(p).to(p.device)
                if p.grad is None:
                    p.grad = summed.clone()
                else:
                    p.grad.copy_(summed)
            offset += n
