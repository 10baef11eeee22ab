"""The ROOT environment against the real local data lake: the demo data are real ROOT files whose checksums Rucio
has, written reproducibly; the ROOT C++ kernel gets an attached dataset from the Rucio sidebar's comm protocol and
reads it on the storage mount and through the XCache; the Python kernels load "Add to Notebook" by themselves; the
user environments carry the rucio-jupyterlab fixes and kernel specs that point at their own Python."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from pathlib import Path

from devstack.rucio_seed import DEMO_SCOPE, HIGGS_DATASET, REPLICA_RSE, ROOT_PYTHON, rse_dir
from devstack.settings import REPO, VENVS

SINGLEUSER_PYTHON = VENVS / "singleuser" / "bin" / "python"
ROOT_ENV = VENVS / "kernel-root"
SESSION = Path(__file__).with_name("kernel_session.py")


def kernel_session(kernel: str, plan: dict, settings, extra_env: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "BEARER_TOKEN", "JUPYTER"))}
    env.update(JUPYTER_PATH=str(ROOT_ENV / "share" / "jupyter"), **(extra_env or {}))
    run = subprocess.run(
        [str(SINGLEUSER_PYTHON), str(SESSION), kernel, json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=settings.state_dir,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def demo_files(settings, root_client) -> list[tuple[dict, Path]]:
    files = sorted(root_client.list_files(DEMO_SCOPE, HIGGS_DATASET), key=lambda f: f["name"])
    mount = rse_dir(settings, REPLICA_RSE)
    return [(f, next(mount.glob(f"{DEMO_SCOPE}/*/*/{f['name']}"))) for f in files]


def test_the_demo_dataset_is_root_files_of_higgs_candidates_whose_checksums_rucio_has(settings, rucio, root_client):
    found = demo_files(settings, root_client)
    assert len(found) == 3
    for catalogue, path in found:
        data = path.read_bytes()
        assert catalogue["bytes"] == len(data) and catalogue["adler32"] == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    check = subprocess.run(
        [
            str(ROOT_PYTHON),
            "-W",
            "ignore",
            "-c",
            "import sys, uproot\n"
            "for p in sys.argv[1:]:\n"
            "    t = uproot.open(p)['events']; a = t.arrays(['m4l', 'lep_pt'], library='np')\n"
            "    print(t.num_entries, len(t.keys()), round(float(abs(a['m4l'] - 125).min()), 1), a['lep_pt'].shape[1])",
            *(str(p) for _, p in found),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split("\n")[:3] == ["44000 13 0.0 4"] * 3  # candidates, branches, a Higgs peak, 4 leptons


def test_the_demo_files_are_the_same_bytes_every_time_they_are_written(tmp_path):
    for out in ("a", "b"):
        run = subprocess.run(
            [str(ROOT_PYTHON), "-W", "ignore", "-m", "devstack.higgs_sample", str(tmp_path / out), "--events", "500"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
    written = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert written == [f"higgs-candidates.0{i}.root" for i in range(3)]
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in written)


def test_the_cpp_kernel_reads_an_attached_dataset_on_the_mount_and_through_the_cache(
    settings, rucio, cache_layer, root_client, stack
):
    found = demo_files(settings, root_client)
    attachment = {
        "type": "collection",
        "variableName": "higgs",
        "did": f"{DEMO_SCOPE}:{HIGGS_DATASET}",
        "didAvailable": True,
        "files": [{"path": str(path), "pfn": f"file://localhost{path}"} for _, path in found],
    }
    cells = [
        'std::cout << higgs.size() << " " << TFile::Open(higgs[0].c_str())->Get<TTree>("events")->GetEntries() << " "'
        " << higgs.urls.size() << std::endl;",
        'TChain chain("events"); for (auto &u : higgs.urls) chain.AddFile(u.c_str()); '
        'std::cout << "cached " << *ROOT::RDataFrame(chain).Count() << " from " << higgs.urls[0] << std::endl;',
        'TCanvas canvas("c", "", 400, 300); chain.Draw("m4l"); canvas.Draw();',
    ]
    # The kernel asks Rucio for the site's URLs itself, as a user's server would (here as root, site LOCAL).
    result = kernel_session(
        "root",
        {"inject": [attachment], "cells": cells},
        settings,
        {"RUCIO_CONFIG": str(stack.root_cli_config), "SITE_NAME": "LOCAL"},
    )
    assert {"type": "comm_msg", "action": "ack-inject", "variable_names": ["higgs"], "target": None} in result["comm"]
    assert "3 44000 3" in result["outputs"][0]
    cached = result["outputs"][1]
    assert "cached 132000 from root://" in cached and f"//root://127.0.0.1:{settings.xrootd_port}/" in cached
    # Plots are images: JSROOT's HTML would load its code from public web servers.
    assert "[image/png text/plain]" in result["outputs"][2] and "script" not in result["outputs"][2]


def test_python_kernels_load_add_to_notebook_by_themselves(settings):
    probe = "print(sorted(get_ipython().extension_manager.loaded), callable(resolve_dids))"
    for kernel in ("python3", "dlaas-root"):  # the base environment's kernel and the ROOT one
        (output,) = kernel_session(kernel, {"cells": [probe]}, settings)["outputs"]
        assert "'rucio_jupyterlab.kernels.ipython'" in output and output.strip().endswith("True"), (kernel, output)


def test_the_user_environments_carry_the_fixes_and_their_own_kernel_specs():
    check = subprocess.run(
        [str(SINGLEUSER_PYTHON), "-m", "singleuser.rucio_jupyterlab_fixes", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.count(": applied (") == check.stdout.count("rucio-jupyterlab fix") >= 4
    kernels = ROOT_ENV / "share" / "jupyter" / "kernels"
    for name in ("root", "dlaas-root"):
        assert json.loads((kernels / name / "kernel.json").read_text())["argv"][0] == str(ROOT_ENV / "bin" / "python")
    # no second, unfixed copy of the extension's frontend on the servers' JUPYTER_PATH
    assert not (ROOT_ENV / "share" / "jupyter" / "labextensions" / "rucio-jupyterlab").exists()
    overrides = VENVS / "singleuser" / "share/jupyter/lab/settings/overrides.d/dlaas.json"
    assert json.loads(overrides.read_text())["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
