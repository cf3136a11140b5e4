"""Training on several processes: the helpers, a whole run and a resumed run on 2 gloo ranks.

The two-process tests start real ``torchrun`` jobs (``python -m torch.distributed.run``): one job
checks the helpers, trains a tiny run on both ranks and compares a step's sharded gradient with
one process's; a second job resumes a single-process checkpoint through ``muselens train`` and
must reach the single-process result (stages 2 and 3 are exact; stage 1 is not, see the module).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from muselens.training.checkpoint import load_checkpoint
from muselens.training.train_config import load_config, merge
from muselens.training.distributed import TORCHRUN_ENV, Distributed, launched_by_torchrun, state_checksum
from muselens.training.run import TrainingRun
from tests.tiny_model import TINY, make_museum

FULL_ENV = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}

# Uneven shards everywhere: stage 1 batches of 5 and 1 image (rank 1's share of the last is
# empty), stage 2 steps of 5 and 1 image, stage 3 steps of 4 triplets over 2-6 distinct images.
# Two stage-3 passes, so mining runs on weights the sharded steps produced.
CONFIG = merge(TINY, {"stage1": {"batch_size": 5}, "stage2": {"images_per_step": 5}, "stage3": {"epochs": 2}})


# -- one process: the context and its helpers as no-ops -----------------------------------------
def test_torchrun_environment_is_recognised_only_whole():
    assert not launched_by_torchrun({})
    assert launched_by_torchrun(FULL_ENV)
    with pytest.raises(ValueError, match=r"not \['MASTER_ADDR', 'MASTER_PORT'\]"):
        launched_by_torchrun({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert set(FULL_ENV) == set(TORCHRUN_ENV)


def test_from_env_without_torchrun_or_with_one_process_is_single():
    for env in ({}, FULL_ENV):
        ctx = Distributed.from_env("cpu", env)
        assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main, ctx.device) == (0, 1, False, True,
                                                                                  torch.device("cpu"))


@pytest.mark.parametrize("change, message", [
    ({"RANK": "one"}, "RANK='one' is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, r"RANK=2 must be in \[0, WORLD_SIZE=2\)"),
    ({"LOCAL_RANK": "-1"}, "LOCAL_RANK=-1 must be >= 0"),
])
def test_from_env_refuses_a_bad_environment(change, message):
    with pytest.raises(ValueError, match=message):
        Distributed.from_env("cpu", {**FULL_ENV, **change})


def test_from_env_refuses_other_devices():
    with pytest.raises(ValueError, match="runs on cpu or cuda"):
        Distributed.from_env("meta", FULL_ENV)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_from_env_refuses_cuda_without_a_cuda_device():
    with pytest.raises(ValueError, match="no CUDA device"):
        Distributed.from_env("cuda", FULL_ENV)


@pytest.mark.parametrize("kwargs, message", [
    ({"rank": 1, "world_size": 1}, r"rank must be in \[0, world_size\)"),
    ({"rank": -1}, "rank must be >= 0"),
    ({"world_size": 0}, r"rank must be in \[0, world_size\)"),
    ({"rank": 0, "world_size": 2}, "needs an initialised process group"),
])
def test_a_context_is_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Distributed(**kwargs)


def test_a_context_wants_a_torch_device():
    with pytest.raises(TypeError, match="device must be a torch.device"):
        Distributed(device="cpu")


def test_single_process_helpers_change_nothing():
    one = Distributed.single()
    assert one.shard(range(5)) == [0, 1, 2, 3, 4]
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(one.all_reduce_mean(x), x) and torch.equal(one.all_reduce_sum(x), x)
    assert torch.equal(one.all_gather_tensor(x), x)
    assert one.broadcast_object({"a": 1}) == {"a": 1}
    rows = one.map_rows(3, lambda i: (torch.tensor([[float(i)]]), torch.tensor([[i, -i]])))
    assert rows[0].tolist() == [[0.0], [1.0], [2.0]] and rows[1].tolist() == [[0, 0], [1, -1], [2, -2]]
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)
    one.sync_gradients(torch.optim.SGD([p], lr=1.0))
    assert p.grad.tolist() == [1.0, 1.0]
    one.barrier()
    one.destroy()


def test_single_process_helpers_refuse_bad_input():
    one = Distributed.single()
    with pytest.raises(TypeError, match="floating-point"):
        one.all_reduce_mean(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="at least one dimension"):
        one.all_gather_tensor(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"must return a \(1, ...\) tensor"):
        one.map_rows(2, lambda i: torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least one item"):
        one.map_rows(0, lambda i: torch.zeros(1))
    with pytest.raises(ValueError, match="n must be >= 0"):
        one.map_rows(-1, lambda i: torch.zeros(1))


def test_state_checksum_sees_every_bit_and_nothing_else():
    state = {"a": {"w": torch.tensor([1.0, 2.0])}, "b": torch.zeros(2, dtype=torch.int64)}
    same = {"b": torch.zeros(2, dtype=torch.int64), "a": {"w": torch.tensor([1.0, 2.0])}}
    assert state_checksum(state) == state_checksum(same) == Distributed.single().check_same(state)
    nudged = copy.deepcopy(state)
    nudged["a"]["w"][1] = torch.nextafter(torch.tensor(2.0), torch.tensor(3.0))
    assert state_checksum(nudged) != state_checksum(state)
    assert state_checksum({"a": {"w": torch.tensor([1.0, 2.0], dtype=torch.float64)}, "b": state["b"]}) \
        != state_checksum(state)
    with pytest.raises(TypeError, match="must be a mapping"):
        state_checksum([torch.zeros(1)])


def test_a_run_refuses_a_context_on_another_device(tmp_path):
    with pytest.raises(ValueError, match="distributed context runs on cuda"):
        TrainingRun(tmp_path / "data", tmp_path / "run", load_config(None, TINY), device="cpu",
                    distributed=Distributed.single("cuda"))


# -- two gloo processes ---------------------------------------------------------------------
def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in TORCHRUN_ENV:  # the job gets its own; a stray one here must not leak in
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"torchrun exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done


RANK_PROGRAM = r'''
import json, sys
from pathlib import Path
import numpy as np
import torch
from torch import nn
torch.set_num_threads(1)
from muselens.training.train_config import load_config
from muselens.training.distributed import Distributed, state_checksum
from muselens.training.run import TrainingRun

data, out, reports = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
dist = Distributed.from_env("cpu")
r = dist.rank
rep = {"rank": r, "world_size": dist.world_size, "local_rank": dist.local_rank, "is_main": dist.is_main}

# -- helpers ------------------------------------------------------------------------------------
rep["shard"] = dist.shard(list(range(7)))
rep["gather_uneven"] = dist.all_gather_tensor(torch.full((2 * r + 1, 2), float(r))).tolist()
rep["gather_empty"] = dist.all_gather_tensor(torch.full((r, 3), r + 1, dtype=torch.int64)).tolist()
try:
    dist.all_gather_tensor(torch.zeros(1, r + 1))
except ValueError as error:
    rep["gather_mismatch"] = str(error)
rep["sum"] = dist.all_reduce_sum(torch.tensor([1.0, float(r)])).tolist()
rep["mean"] = dist.all_reduce_mean(torch.tensor([float(r), 10.0 * r])).tolist()
rep["broadcast"] = dist.broadcast_object({"from": r})
computed = []
def row(i):
    computed.append(i)
    return torch.tensor([[float(i), float(i * i)]])
rep["map_rows"] = dist.map_rows(5, row).tolist()
rep["computed"] = computed
rep["map_rows_few"] = [t.tolist() for t in dist.map_rows(1, lambda i: (torch.tensor([[i + 1.0]]),
                                                                       torch.tensor([[[i, 7]]])))]
a, b, c = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(1))
a.grad = torch.tensor([1.0, 2.0]) * (r + 1)
if r == 1:
    b.grad = torch.ones(3)
dist.sync_gradients(torch.optim.SGD([a, b, c], lr=1.0))
rep["grads"] = [a.grad.tolist(), b.grad.tolist(), c.grad]
bn = nn.BatchNorm1d(2)
bn.running_mean.fill_(float(r)); bn.running_var.fill_(1.0 + 2 * r); bn.num_batches_tracked.fill_(10 + r)
dist.average_buffers([bn])
rep["bn"] = [bn.running_mean.tolist(), bn.running_var.tolist(), int(bn.num_batches_tracked)]
lin = nn.Linear(2, 1)
with torch.no_grad():
    lin.weight.fill_(float(r)); lin.bias.fill_(5.0 + r)
dist.broadcast_module(lin)
rep["broadcast_module"] = [lin.weight.tolist(), lin.bias.tolist()]
rep["same"] = dist.check_same({"w": torch.ones(2)})
try:
    dist.check_same({"w": torch.full((2,), float(r))})
except RuntimeError as error:
    rep["differ"] = str(error)

# -- a whole run ----------------------------------------------------------------------------------
config = load_config(None, json.loads(sys.argv[4]))
run = TrainingRun(data, out, config, pretrained=False, progress=False, distributed=dist)
summary = run.run()
rep["checksum"] = state_checksum(run.model.state_dict())
rep["history"] = summary["history"]
rep["summary_world_size"] = summary.get("world_size")

# -- one stage-3 step, sharded (both ways) against this rank's own single-process gradient ----------
from muselens.training.classifier import split_blocks
from muselens.training.trunk import TrunkCache
from muselens.training.stages.region_descriptor import (build_descriptor_optimizer, build_stage3_loss,
    set_frozen_bn_train_mode, sharded_step_gradients, step_gradients)
model = run.model
frozen, trainable = split_blocks(model.classifier, config.train_blocks)
top = nn.Sequential(*trainable)
cache = TrunkCache(nn.Sequential(*frozen), run.train_images.images, model.classifier.backbone.contract,
                   short_side=config.stage3.short_side, progress=False)
labels = np.asarray(run.train_images.labels)
loss_fn = build_stage3_loss(config.stage3)
optimizer = build_descriptor_optimizer(model.net, top, config.stage3.optim)
set_frozen_bn_train_mode(model.net)
params = [p for g in optimizer.param_groups for p in g["params"]]
by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
classes = sorted(by_class)
triplets = [(by_class[c][0], by_class[c][1], by_class[classes[(k + 1) % len(classes)]][0])
            for k, c in enumerate(classes)]
rep["step"] = []
for chosen in (triplets, triplets[:1]):  # 6 distinct images (3 + 3 per rank), then 3 (2 + 1)
    distinct, local = np.unique(np.asarray(chosen).reshape(-1), return_inverse=True)
    t = torch.from_numpy(local.reshape(-1, 3))
    y = torch.as_tensor(labels[distinct])
    optimizer.zero_grad(set_to_none=True)
    ref_loss, _ = step_gradients(model.net, top, cache, distinct, y, t, loss_fn, "cpu", grad_cache=False)
    reference = [None if p.grad is None else p.grad.clone() for p in params]
    for grad_cache in (True, False):
        optimizer.zero_grad(set_to_none=True)
        loss, _ = sharded_step_gradients(model.net, top, cache, distinct, y, t, loss_fn, "cpu", dist,
                                         grad_cache=grad_cache)
        dist.sync_gradients(optimizer)
        got = [None if p.grad is None else p.grad.clone() for p in params]
        rep["step"].append({
            "images": len(distinct), "grad_cache": grad_cache, "loss": [ref_loss, loss],
            "none_match": [g is None for g in got] == [g is None for g in reference],
            "max_diff": max(float((g - h).abs().max()) for g, h in zip(got, reference) if g is not None),
            "max_grad": max(float(h.abs().max()) for h in reference if h is not None),
        })

(reports / f"rank{r}.json").write_text(json.dumps(rep))
dist.destroy()
'''


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One 2-process torchrun job: helper checks, a whole tiny run, a sharded stage-3 step."""
    root = tmp_path_factory.mktemp("two_ranks")
    data = make_museum(root / "museum")
    (root / "reports").mkdir()
    program = root / "rank_program.py"
    program.write_text(RANK_PROGRAM)
    done = _torchrun([str(program), str(data), str(root / "run"), str(root / "reports"), json.dumps(CONFIG)],
                     cwd=root)
    reports = [json.loads((root / "reports" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"reports": reports, "run": root / "run", "output": done.stdout + done.stderr}


@pytest.mark.slow
def test_each_rank_knows_its_place_and_takes_its_share(two_ranks):
    r0, r1 = two_ranks["reports"]
    assert [(r["rank"], r["world_size"], r["local_rank"], r["is_main"]) for r in (r0, r1)] == \
        [(0, 2, 0, True), (1, 2, 1, False)]
    assert (r0["shard"], r1["shard"]) == ([0, 2, 4, 6], [1, 3, 5])
    assert (r0["computed"], r1["computed"]) == ([0, 2, 4], [1, 3])


@pytest.mark.slow
def test_collectives_give_every_rank_the_same_answer(two_ranks):
    for rep in two_ranks["reports"]:
        assert rep["gather_uneven"] == [[0.0, 0.0]] + [[1.0, 1.0]] * 3  # 1 row from rank 0, 3 from rank 1
        assert rep["gather_empty"] == [[2, 2, 2]]  # rank 0 sent no rows
        assert "trailing shapes and dtypes differ" in rep["gather_mismatch"]
        assert rep["sum"] == [2.0, 1.0] and rep["mean"] == [0.5, 5.0]
        assert rep["broadcast"] == {"from": 0}
        assert rep["map_rows"] == [[float(i), float(i * i)] for i in range(5)]
        assert rep["map_rows_few"] == [[[1.0]], [[[0, 7]]]]  # rank 1 had no item, learnt the shapes
        assert rep["grads"] == [[3.0, 6.0], [1.0, 1.0, 1.0], None]  # summed; zeros stand in; None stays
        assert rep["bn"] == [[0.5, 0.5], [2.0, 2.0], 10]  # float buffers averaged, counts rank 0's
        assert rep["broadcast_module"] == [[[0.0, 0.0]], [5.0]]
        assert rep["same"] == two_ranks["reports"][0]["same"]
        assert "the ranks' weights differ" in rep["differ"]


@pytest.mark.slow
def test_a_two_process_run_writes_one_run_and_its_ranks_agree(two_ranks):
    run, (r0, r1) = two_ranks["run"], two_ranks["reports"]
    assert sorted(p.name for p in run.iterdir()) == ["before-stage-3.pt", "checkpoint.pt", "config.yaml", "curves.png",
                                                     "history.json", "model.json", "model.pt"]
    history = json.loads((run / "history.json").read_text())
    assert [(h["stage"], h["epoch"]) for h in history["history"]] == [(1, 0), (2, 0), (3, 0), (3, 1)]
    assert history["world_size"] == 2 == r0["summary_world_size"] == r1["summary_world_size"]
    assert [h["images"] for h in history["history"][:2]] == [6, 6]  # both ranks' images counted
    def timeless(rows):
        return [{k: v for k, v in row.items() if k not in ("seconds", "val_seconds")} for row in rows]

    assert timeless(r0["history"]) == timeless(r1["history"]) == timeless(history["history"])
    assert load_checkpoint(run / "checkpoint.pt")["stage_index"] == 3
    assert r0["checksum"] == r1["checksum"] == state_checksum(torch.load(run / "model.pt", weights_only=True))
    for stage in (1, 2, 3):  # progress is printed by rank 0 only
        assert two_ranks["output"].count(f"stage {stage} epoch 0: loss") == 1


@pytest.mark.slow
def test_a_sharded_stage3_step_takes_the_single_process_gradient(two_ranks):
    for rep in two_ranks["reports"]:
        assert [(s["images"], s["grad_cache"]) for s in rep["step"]] == [(6, True), (6, False), (3, True),
                                                                        (3, False)]
        for step in rep["step"]:
            assert step["none_match"]
            assert step["loss"][1] == pytest.approx(step["loss"][0], rel=1e-6)
            assert step["max_grad"] > 0 and step["max_diff"] <= 1e-6 * max(1.0, step["max_grad"])


class _Stop(Exception):
    pass


def _stopped_after_stage_1(tmp_path: Path, config: dict, monkeypatch) -> tuple[Path, dict]:
    """A tiny museum and a run of ``config`` stopped after stage 1, copied to ``one`` and ``two``
    in ``tmp_path`` for one process and two ranks to resume; the checkpoint it left."""
    data = make_museum(tmp_path / "museum")
    base = tmp_path / "base"

    def stop(*args, **kwargs):
        raise _Stop

    with monkeypatch.context() as patch:
        patch.setattr("muselens.training.run.fit_fcn", stop)
        with pytest.raises(_Stop):
            TrainingRun(data, base, load_config(None, config), pretrained=False, progress=False).run()
    saved = load_checkpoint(base / "checkpoint.pt")
    assert (saved["stage_index"], saved["next_epoch"]) == (1, 0)
    shutil.copytree(base, tmp_path / "one")
    shutil.copytree(base, tmp_path / "two")
    return data, saved


@pytest.mark.slow
def test_torchrun_resumes_a_checkpoint_and_equals_one_process_in_stages_2_and_3(tmp_path, monkeypatch):
    """Stages 2 and 3 are exact in arithmetic (BatchNorm frozen, augmentation a function of the
    item, mining on gathered descriptors): two ranks resuming the checkpoint written after
    stage 1 reach one process's weights up to the order of float additions."""
    data, saved = _stopped_after_stage_1(tmp_path, CONFIG, monkeypatch)

    one = TrainingRun(data, tmp_path / "one", None, pretrained=False, progress=False, resume=True).run()
    done = _torchrun(["-m", "muselens", "train", str(data), "--out", str(tmp_path / "two"), "--resume",
                      "--device", "cpu", "--no-progress"], cwd=tmp_path)
    assert done.stdout.count("wrote ") == 1  # the summary table comes from rank 0 only
    two = json.loads((tmp_path / "two" / "history.json").read_text())

    assert [(h["stage"], h["epoch"], h["images"]) for h in two["history"]] == \
        [(h["stage"], h["epoch"], h["images"]) for h in one["history"]]
    for key in ("loss", "accuracy", "val_mp_at_1", "val_map"):
        assert [h[key] for h in two["history"]] == pytest.approx([h[key] for h in one["history"]],
                                                                 rel=1e-5, abs=1e-6), key
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    start = saved["model"]
    changed = 0
    for part in a:
        for key in a[part]:
            torch.testing.assert_close(b[part][key], a[part][key], rtol=1e-5, atol=1e-6)
            changed += not torch.equal(a[part][key], start[part][key])
    assert changed > 0  # stages 2 and 3 did train


@pytest.mark.slow
def test_torchrun_with_a_view_pool_builds_it_once_and_equals_one_process(tmp_path, monkeypatch):
    """Stage 2 from a pool of trunk features: rank 0 builds it in the run folder, the other rank
    opens it after a barrier (never rebuilds it), and two ranks resuming the stage-1 checkpoint
    reach one process's weights, as without a pool."""
    pooled = merge(CONFIG, {"stage2": {"epochs": 2}, "view_pool": {"stage1_views": 0, "stage2_views": 2}})
    data, _ = _stopped_after_stage_1(tmp_path, pooled, monkeypatch)

    one = TrainingRun(data, tmp_path / "one", None, pretrained=False, progress=False, resume=True).run()
    done = _torchrun(["-m", "muselens", "train", str(data), "--out", str(tmp_path / "two"), "--resume",
                      "--device", "cpu", "--no-progress"], cwd=tmp_path)
    output = done.stdout + done.stderr
    assert output.count("stage 2: 2 pooled views per photo") == 1  # said by rank 0 only
    pool = tmp_path / "two" / "view-pool" / "stage2"
    assert (pool / "manifest.json").is_file() and (pool / "features.f16").stat().st_size > 0
    assert json.loads((pool / "manifest.json").read_text()) == \
        json.loads((tmp_path / "one" / "view-pool" / "stage2" / "manifest.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert [(h["stage"], h["epoch"]) for h in two["history"]] == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1)]
    for key in ("loss", "accuracy", "val_mp_at_1", "val_map"):
        assert [h[key] for h in two["history"]] == pytest.approx([h[key] for h in one["history"]],
                                                                 rel=1e-5, abs=1e-6), key
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    for part in a:
        for key in a[part]:
            torch.testing.assert_close(b[part][key], a[part][key], rtol=1e-5, atol=1e-6)


def test_train_command_reports_a_partial_torchrun_environment(tiny_museum, tmp_path, monkeypatch, capsys):
    from muselens.cli import main as cli

    for key in TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli(["train", str(tiny_museum), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "sets ['WORLD_SIZE'] but not ['RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT']" \
        in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
