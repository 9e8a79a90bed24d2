"""The catalogs: where names are looked up (a user's folder overrides the shipped one), the
did-you-mean for unknown names, `simtrain list`, and the copy that ships in the wheel."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simtrain.cli import main
from simtrain.scenario.catalogs import CATALOGS
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.files import available, catalog_roots, resolve_path
from tests.test_bad_files import assert_one_line_error

ROOT = Path(__file__).resolve().parent.parent
SMALL = ['model.name="llama3-8b"', "cluster.gpus=16", "parallel.tp=2", "parallel.pp=4", "parallel.dp=0",
         "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=16",
         "training.seq_len=2048", "parallel.vp=1", 'schedule.name="1f1b"']


def test_every_catalog_folder_of_the_checkout_is_listed_in_one_place():
    on_disk = {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.toml")) or p.name == "schedules"}
    on_disk -= {"benchmarks", "tools", "tests", "docs", "simtrain", "build", "dist", ".venv"}
    assert on_disk <= set(CATALOGS), on_disk - set(CATALOGS)


def test_simtrain_home_overrides_a_shipped_topology(tmp_path, monkeypatch):
    (tmp_path / "topologies").mkdir()
    text = (ROOT / "topologies" / "dgx-h100.toml").read_text().replace("bandwidth_gbps = 400 ", "bandwidth_gbps = 800 ")
    (tmp_path / "topologies" / "dgx-h100.toml").write_text(text)
    monkeypatch.setenv("SIMTRAIN_HOME", str(tmp_path))
    assert resolve_path("dgx-h100", "topologies", "topology", "cluster.topology") == tmp_path / "topologies" / "dgx-h100.toml"
    assert available("topologies")["dgx-h100"].origin == "$SIMTRAIN_HOME"
    assert available("topologies")["dgx-a100"].origin in ("checkout", "shipped")  # the rest stays shipped
    from simtrain.hardware.load import load_topology

    # the user's file is the one built: NIC at 800 Gb/s x 0.92 efficiency = 92 GB/s
    topo = load_topology("dgx-h100", 16)
    assert dict(topo.tier_bandwidth())["nic"] == pytest.approx(800e9 / 8 * 0.92, rel=1e-12)


def test_files_next_to_the_scenario_are_found(tmp_path):
    """A project laid out like the repository: scenarios/, topologies/ and devices/ side by side."""
    proj = tmp_path / "proj"
    for d in ("scenarios", "topologies", "devices"):
        (proj / d).mkdir(parents=True)
    shutil.copy(ROOT / "topologies" / "dgx-h100.toml", proj / "topologies" / "my-cluster.toml")
    dev = (ROOT / "devices" / "H100-SXM.toml").read_text().replace('aliases = ["H100"]\n', "")
    (proj / "devices" / "my-gpu.toml").write_text(dev.replace("peak_tflops = 989 ", "peak_tflops = 1978"))
    (proj / "scenarios" / "mine.toml").write_text(
        '[model]\nname = "llama3-8b"\n[cluster]\ntopology = "my-cluster"\ndevice = "my-gpu"\ngpus = 16\n'
        '[parallel]\ntp = 2\npp = 4\n[training]\nglobal_batch = 16\n')
    from simtrain.engine.plan import make_plan

    plan = make_plan(load_scenario(str(proj / "scenarios" / "mine.toml")))
    assert plan.device.name == "my-gpu" and plan.device.peak_flops == 1978e12
    assert plan.topology.name == "dgx-h100"  # the file's own name inside
    roots = catalog_roots("topologies", near=proj / "scenarios" / "mine.toml")
    assert roots[0].origin == "next to the scenario" and roots[0].path == proj / "topologies"


def test_a_shipped_scenario_does_not_shadow_simtrain_home(tmp_path, monkeypatch):
    (tmp_path / "topologies").mkdir()
    shutil.copy(ROOT / "topologies" / "dgx-h100.toml", tmp_path / "topologies" / "dgx-h100.toml")
    monkeypatch.setenv("SIMTRAIN_HOME", str(tmp_path))
    near = ROOT / "scenarios" / "llama3-405b-8k.toml"
    assert resolve_path("dgx-h100", "topologies", "t", "f", near=near).parent == tmp_path / "topologies"


@pytest.mark.parametrize("argv, fragments", [
    (["run", "llama3-405b-8kk"], ["scenario = 'llama3-405b-8kk': no such scenario", "did you mean 'llama3-405b-8k'",
                                  "simtrain list scenarios"]),
    (["run", "--set", "cluster.topology=dgx-h10"], ["no such topology", "did you mean 'dgx-h100'"]),
    (["run", "--set", "cluster.device=MI300"], ["unknown device", "did you mean 'MI300X'"]),
    (["run", "--set", "schedule.file=1f1b_pp4"], ["no such schedule", "did you mean '1f1b_pp4_m8'"]),
    (["run", "--set", 'model.name="llama3-7b"'], ["not in the model catalog", "did you mean", "'llama3-8b'"]),
    (["run", "zzzz"], ["no such scenario", "a name from `simtrain list scenarios` ("]),
])
def test_unknown_names_get_a_did_you_mean_not_the_whole_list(argv, fragments, capsys):
    assert_one_line_error(argv, capsys, *fragments)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "aleph-alpha" not in err and "gpt-1t" not in err and "palm" not in err  # not the 48 names


def test_list_shows_every_kind_and_user_entries(tmp_path, monkeypatch, capsys):
    assert main(["list", "--json"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert set(everything) == {*CATALOGS, "models"}
    assert len(everything["scenarios"]) == len(list((ROOT / "scenarios").glob("*.toml")))
    assert {"H100-SXM", "MI300X", "B200"} <= {d["name"] for d in everything["devices"]}
    assert "llama3-405b" in {m["name"] for m in everything["models"]}
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "my-stack.toml").write_text('description = "mine"\n')
    monkeypatch.setenv("SIMTRAIN_HOME", str(tmp_path))
    assert main(["list", "stacks"]) == 0
    out = capsys.readouterr().out
    assert "my-stack" in out and "mine" in out and "$SIMTRAIN_HOME" in out


def test_list_of_models_gives_published_sizes(capsys):
    assert main(["list", "models", "--json"]) == 0
    params = {m["name"]: m["params_b"] for m in json.loads(capsys.readouterr().out)}
    assert params["llama3-405b"] == pytest.approx(405.9, abs=0.1)  # Llama 3 paper: 405B
    assert params["llama3-8b"] == pytest.approx(8.03, abs=0.01)  # released config: 8.03B


def test_the_built_package_carries_its_catalogs_and_runs_without_a_checkout(tmp_path):
    """setup.py's build_py copies every catalog folder into simtrain/catalogs/; from a
    directory with no checkout beside it, the installed package finds them there and
    simulates the default scenario exactly as the checkout does."""
    build = tmp_path / "build"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build)], cwd=ROOT, check=True,
                   capture_output=True)
    for name in CATALOGS:
        if (ROOT / name).is_dir():
            shipped = sorted(p.name for p in (build / "simtrain" / "catalogs" / name).iterdir())
            assert shipped == sorted(p.name for p in (ROOT / name).iterdir() if p.is_file()), name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SIMTRAIN_HOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(build)
    run = subprocess.run([sys.executable, "-m", "simtrain.cli", "run", "--json", "--no-progress"], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    from simtrain.analysis.run import simulate

    here = simulate(load_scenario("llama3-405b-8k"))
    assert json.loads(run.stdout)["step_time_s"] == pytest.approx(here.step_time_s, rel=1e-12)
    listed = subprocess.run([sys.executable, "-m", "simtrain.cli", "list", "devices", "--json"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert {d["origin"] for d in json.loads(listed.stdout)} == {"shipped"}


def test_an_empty_name_says_so():
    with pytest.raises(SimtrainError, match="is empty"):
        resolve_path(" ", "scenarios", "scenario", "scenario")
