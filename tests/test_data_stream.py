"""data/stream.py's stages on their own: the resume arithmetic of worker_share, the skip counts a
Loader carries (besides the process totals of data.skipped), and training frames written in place."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data import skipped
from data.pipeline import make_pretrain_loader
from data.samples import SampleSpec
from data.stream import BatchFrames, StreamSpec, worker_share
from tests.fixtures.data_media import corrupt, make_clip, meta, tiny_cfg, write_folder


def _spec(batches: int | None, skip: int = 0, rank: int = 0, world: int = 1) -> StreamSpec:
    return StreamSpec(Path("."), {"s": 1}, tiny_cfg(1), SampleSpec(mode="pretrain", segments=1), batch_size=2,
                      rank=rank, world_size=world, batches_per_epoch=batches, skip_batches=skip)


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize("skip", [0, 1, 2, 5, 7])
def test_worker_shares_serve_the_rest_of_the_epoch_in_order(workers, skip):
    """Torch takes one batch from each worker in turn; after skip_batches=k that round robin must
    serve batches k, k+1, ..., B-1 of the uninterrupted epoch, each once."""
    total = 7
    served = {}
    for p in range(workers):
        share = worker_share(_spec(total, skip), p, workers)
        logical = (p + skip) % workers
        served[p] = [] if share is None else [logical + j * workers for j in range(share.first, share.last)]
        if share is not None:
            assert share.slot == logical and share.n_slots == workers
    order = [served[p][i] for i in range(total) for p in range(workers) if i < len(served[p])]
    assert order == list(range(skip, total))


def test_ranks_and_evaluation_passes_get_their_own_slots():
    assert worker_share(_spec(None, rank=1, world=2), 1, 3) == worker_share(_spec(None, rank=1, world=2), 1, 3)
    share = worker_share(_spec(None, rank=1, world=2), 1, 3)
    assert (share.slot, share.n_slots, share.first, share.last) == (4, 6, 0, None)
    assert worker_share(_spec(4, skip=4), 0, 2) is None  # nothing left of the epoch


def test_a_loader_carries_its_own_skip_counts(tmp_path):
    clip = make_clip(6.0)
    good = [(f"c{i}", clip, meta(f"c{i}", 6.0)) for i in range(4)]
    write_folder(tmp_path / "pre", [("bad", corrupt(clip), meta("bad", 6.0))] + good, maxcount=5)  # read first
    write_folder(tmp_path / "clean", good, maxcount=5)
    skipped.reset()
    loader = make_pretrain_loader(tiny_cfg(4), tmp_path / "pre", batch_size=2, batches_per_epoch=2, num_workers=0,
                                  shuffle_buffer=1)
    assert len(list(loader)) == 2
    assert dict(loader.skipped) == skipped.skipped_summary() == {"corrupt": 1}
    other = make_pretrain_loader(tiny_cfg(4), tmp_path / "clean", batch_size=2, batches_per_epoch=1, num_workers=2,
                                 shuffle_buffer=1)
    list(other)
    assert not other.skipped and dict(loader.skipped) == skipped.skipped_summary() == {"corrupt": 1}


def test_batch_frames_fill_slots_in_order_and_never_rewrite_a_taken_batch():
    frames = BatchFrames(_spec(3))
    assert frames.shape == (2, 1, 8, 32, 32, 3)  # batch 2, tiny_cfg: 1 segment of 8 frames, 32 px crops
    first = frames.slot()
    first.fill_(1)
    frames.add({"video": first})
    assert frames.slot().data_ptr() != first.data_ptr()  # the next slot ...
    assert frames.slot().data_ptr() == frames.slot().data_ptr()  # ... stays it until a clip fills it (a broken one does not)
    frames.add({"video": torch.full_like(first, 2)})  # made elsewhere: copied into its slot
    batch = frames.take()
    assert batch.shape == (2, 1, 8, 32, 32, 3) and batch[0].eq(1).all() and batch[1].eq(2).all()
    frames.slot().fill_(3)
    assert batch[0].eq(1).all() and batch[1].eq(2).all()  # the next batch has its own buffer
    eval_spec = StreamSpec(Path("."), {"s": 1}, tiny_cfg(1), SampleSpec(mode="eval", segments=1), batch_size=2)
    assert BatchFrames(eval_spec).slot() is None  # evaluation views are stacked as before


@pytest.mark.parametrize("workers", [0, 1])
def test_training_frames_arrive_in_shared_memory_from_workers(tmp_path, workers):
    """Workers write each clip's frames into a shared-memory batch (no copy on the way to the main
    process); in-process batches stay private. The values do not depend on it."""
    clip = make_clip(6.0)
    write_folder(tmp_path / "pre", [(f"c{i}", clip, meta(f"c{i}", 6.0)) for i in range(4)], maxcount=4)
    kw = dict(batch_size=2, batches_per_epoch=2, shuffle_buffer=1)
    got = list(make_pretrain_loader(tiny_cfg(4), tmp_path / "pre", num_workers=workers, **kw))
    assert [b["video"].is_shared() for b in got] == [workers > 0] * 2
    ref = list(make_pretrain_loader(tiny_cfg(4), tmp_path / "pre", num_workers=1 - workers, **kw))
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(got, ref))
