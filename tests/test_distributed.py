"""Which rank/world/rendezvous a process gets under torchrun, submitit (local), a SLURM step, a SLURM
batch step and alone; a partial torchrun env must raise instead of hanging at init_process_group."""
from __future__ import annotations

import os

import pytest

from experiments import distributed
from experiments.distributed import PartialEnvError, port_from_job_id, resolve_env

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "MASTER_ADDR": "node7", "MASTER_PORT": "29400"}


def test_torchrun_env_first():
    env = resolve_env({**TORCHRUN, "SLURM_JOB_ID": "5", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port, env.source) == \
        (3, 8, 3, "node7", 29400, "torchrun")


@pytest.mark.parametrize("drop", ["MASTER_ADDR", "LOCAL_RANK", "MASTER_PORT"])
def test_partial_torchrun_env_raises(drop):
    partial = {k: v for k, v in TORCHRUN.items() if k != drop}
    with pytest.raises(PartialEnvError, match=drop):
        resolve_env(partial)


def test_submitit_local_env():
    env = resolve_env({"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_NTASKS": "2",
                       "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_JOB_ID": "4242"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.source) == (1, 2, 1, "127.0.0.1",
                                                                                          "submitit-local")
    assert env.master_port == port_from_job_id("4242")


def test_slurm_step_env_multi_node():
    calls = []

    def hostnames(nodelist):
        calls.append(nodelist)
        return ["gpu03", "gpu04"]

    env = resolve_env({"SLURM_JOB_ID": "123457", "SLURM_PROCID": "9", "SLURM_LOCALID": "1",
                       "SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16", "SLURM_JOB_NODELIST": "gpu[03-04]"},
                      hostnames=hostnames)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.source) == (9, 16, 1, "gpu03", "slurm")
    assert calls == ["gpu[03-04]"]
    assert env.master_port == port_from_job_id("123457")


def test_slurm_batch_step_without_srun_is_one_process():
    """The batch script itself has SLURM_NTASKS=8 but no step variables: it is one process."""
    env = resolve_env({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "8",
                       "SLURM_JOB_NODELIST": "vm"})
    assert (env.world_size, env.source) == (1, "single")


def test_single_process_default():
    env = resolve_env({})
    assert (env.rank, env.world_size, env.local_rank, env.source) == (0, 1, 0, "single")


def test_port_from_job_id_is_stable_and_in_range():
    ports = {port_from_job_id(j) for j in ("1", "99999", "123_4", "2147483647")}
    assert all(20000 <= p < 30000 for p in ports)
    assert port_from_job_id("123457") == port_from_job_id("123457") != port_from_job_id("123458")


def test_scontrol_hostnames_fallback(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol: submitit's parser expands the list
    assert distributed.scontrol_hostnames("gpu[01-02],cpu7") == ["gpu01", "gpu02", "cpu7"]


def test_single_process_setup_is_a_noop_and_restores_env(monkeypatch):
    for k in distributed.TORCHRUN_KEYS:
        monkeypatch.delenv(k, raising=False)
    env = distributed.setup()
    assert env.world_size == 1 and os.environ["WORLD_SIZE"] == "1"
    assert distributed.setup() is env  # idempotent
    assert distributed.all_gather_object("x") == ["x"] and distributed.any_flag(True) is True
    distributed.barrier()
    assert distributed.is_main() and distributed.world_size() == 1
    distributed.cleanup()
    assert "WORLD_SIZE" not in os.environ  # the next run in this process resolves its own env


def test_two_ranks_under_the_local_executor(tmp_path):
    """Two tasks of one submitit local job find each other (gloo) through the resolved env."""
    import io

    from experiments import launcher

    configs = tmp_path / "rqx" / "configs"
    configs.mkdir(parents=True)
    (configs / "a.yaml").write_text("rq: rqx\n")
    summary = launcher.launch(tmp_path / "rqx", ["--tasks-per-node", "2", "--cpus-per-task", "1", "--no-snapshot",
                                                 "--target", "tests.launcher_targets:dist_probe",
                                                 f"output_root={tmp_path / 'results'}"], out=io.StringIO())
    assert summary.exit_code == 0, summary.get("a").error
    m = summary.get("a").metrics
    assert m["world_size"] == 2 and [r["rank"] for r in m["ranks"]] == [0, 1]
    assert {r["source"] for r in m["ranks"]} == {"submitit-local"} and len({r["master"] for r in m["ranks"]}) == 1
    assert m["any_flag"] is True  # rank 1's flag reached rank 0


def test_node_list_expansion_without_slurm():
    """Our fallback for `scontrol show hostnames` (no private submitit helper): ranges, lists, zero padding,
    several bracket groups, plain names; malformed lists are an error."""
    from experiments.distributed import expand_nodelist

    assert expand_nodelist("vm") == ["vm"]
    assert expand_nodelist("gpu[01-03],cpu7") == ["gpu01", "gpu02", "gpu03", "cpu7"]
    assert expand_nodelist("n[8-10,12]") == ["n8", "n9", "n10", "n12"]
    assert expand_nodelist("r[1-2]n[07-08]") == ["r1n07", "r1n08", "r2n07", "r2n08"]
    for bad in ("gpu[01-03", "gpu]1[", "gpu[a-b]"):
        with pytest.raises(ValueError):
            expand_nodelist(bad)
