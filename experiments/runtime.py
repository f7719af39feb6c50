"""Device, precision, threads, seeding and memory accounting for one process."""
from __future__ import annotations

import contextlib
import os
import random
import resource

import numpy as np
import torch

from experiments.config.schema import RuntimeConfig


def pick_device(cfg: RuntimeConfig, local_rank: int = 0) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("runtime.device=cuda but no CUDA device is visible; use runtime.device=cpu or auto")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def configure(cfg: RuntimeConfig, seed: int) -> None:
    """Threads, seeds and determinism switches; call once per process before building anything."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def set_memory_format(model: torch.nn.Module, cfg: RuntimeConfig, device: torch.device) -> None:
    """Channels-last CNNs where they pay: the visual CNN on GPU (`channels_last`), both CNNs on CPU
    (`channels_last_cpu`, ours). `model` is an AVBert (anything with visual_cnn / audio_cnn)."""
    if device.type == "cuda" and cfg.channels_last:
        model.visual_cnn.to(memory_format=torch.channels_last_3d)
    elif device.type == "cpu" and cfg.channels_last_cpu:
        model.visual_cnn.to(memory_format=torch.channels_last_3d)
        model.audio_cnn.to(memory_format=torch.channels_last)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on GPU; a no-op context on CPU (bf16 on CPU is slower there, not faster)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on GPU; peak resident set size of this process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def rng_neutral(iterable):
    """Iterate `iterable` leaving the global torch RNG as each `next()` found it.

    A torch DataLoader draws its workers' base seed from the global generator when its iterator
    starts: at the first batch of every epoch, and again at the first batch after a resume. A run
    resumed mid-epoch would draw once more than an uninterrupted one and every later random number of
    the training step (masking, CPP swaps, negatives, dropout) would differ. Our loaders seed
    themselves from (seed, epoch, slot, sample index) (data.pipeline), so they do not need that draw."""
    it = iter(iterable)
    while True:
        state = torch.get_rng_state()
        try:
            item = next(it)
        except StopIteration:
            return
        finally:
            torch.set_rng_state(state)
        yield item


def rng_state() -> dict:
    """All RNG states as plain types/tensors, so checkpoints load with torch.load(weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
