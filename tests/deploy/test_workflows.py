"""CI, make and the lint agree: GitHub runs the same `make test` as a newcomer and .ci/run, no image is pushed from a
commit whose tests did not pass, `make test-fast` starts no service, and the lint hooks run the project's own pinned
tools, only check, and catch what they are there for."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import tomllib

import pytest
import yaml

from devstack.settings import MAIN_PYTHON
from tests.deploy.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
TEST_WORKFLOW = WORKFLOWS / "test.yaml"
IMAGES_WORKFLOW = WORKFLOWS / "images.yaml"
VENV_BIN = MAIN_PYTHON.parent


def run(argv, *, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def load(path):
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as True
    return workflow


def steps(workflow, job):
    return workflow["jobs"][job]["steps"]


def untested_pushing_jobs(workflow: dict) -> list[str]:
    """Jobs that push an image without the test job (a call of test.yaml) among the jobs they wait for."""
    jobs = workflow["jobs"]
    tests = {name for name, job in jobs.items() if job.get("uses") == "./.github/workflows/test.yaml"}

    def waits_for(name, seen=()):
        needs = jobs[name].get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        return set(needs).union(*(waits_for(n, (*seen, name)) for n in needs if n not in seen))

    pushing = [
        name
        for name, job in jobs.items()
        if any(str(s.get("with", {}).get("push")).lower() == "true" for s in job.get("steps", []))
    ]
    return [name for name in pushing if not tests & waits_for(name)]


def make_dry_run(target: str, **env) -> list[str]:
    """The commands `make <target>` would run (make -n), with the environment's DLAAS_LINT replaced by `env`."""
    base = {k: v for k, v in os.environ.items() if k not in ("DLAAS_LINT", "PYTEST_ARGS", "MAKEFLAGS")}
    r = run(["make", "-n", "--no-print-directory", "-C", REPO, target], env={**base, **env})
    assert r.returncode == 0, r.stderr
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


def test_github_a_newcomer_and_ci_run_the_same_make_test():
    commands = [s["run"].strip() for s in steps(load(TEST_WORKFLOW), "make-test") if "run" in s]
    assert "make test" in commands
    ci_run = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci_run[-1] == "exec make test"
    assert re.search(r"^make test\b", (REPO / "README.md").read_text(), re.M)


def test_the_suite_runs_on_every_push_and_pull_request_and_can_be_called():
    on = load(TEST_WORKFLOW)["on"]
    assert on["push"] == {"branches": ["**"]}  # tags run it through images.yaml
    assert "pull_request" in on and on["pull_request"] in (None, {})
    assert "workflow_call" in on


def test_a_failed_run_leaves_its_screenshots_and_the_stacks_logs():
    uploads = {
        s["with"]["name"]: s
        for s in steps(load(TEST_WORKFLOW), "make-test")
        if s.get("uses", "").startswith("actions/upload-artifact@")
    }
    assert uploads["test-artifacts"]["with"]["path"].strip() == "test-artifacts/"
    assert uploads["test-artifacts"]["if"] in ("${{ !cancelled() }}", "always()")
    assert uploads["stack-logs"]["if"] == "failure()"
    paths = uploads["stack-logs"]["with"]["path"].split()
    assert ".devstack/logs/" in paths and any(p.startswith("/tmp/dlaas-") for p in paths)
    # The upload steps come after the tests.
    names = [s.get("name") for s in steps(load(TEST_WORKFLOW), "make-test")]
    assert names.index("make test") < min(names.index(s["name"]) for s in uploads.values())


def test_no_image_is_pushed_from_a_commit_whose_tests_did_not_pass():
    workflow = load(IMAGES_WORKFLOW)
    assert workflow["on"] == {"push": {"tags": ["v*.*.*"]}}
    assert untested_pushing_jobs(workflow) == []
    assert workflow["jobs"]["base"]["needs"] == "tests"


@pytest.mark.parametrize("mutation", ["drop-needs", "needs-something-else", "tests-job-not-the-suite"])
def test_a_pushing_job_that_skips_the_tests_is_caught(mutation):
    workflow = copy.deepcopy(load(IMAGES_WORKFLOW))
    jobs = workflow["jobs"]
    if mutation == "drop-needs":
        del jobs["base"]["needs"]
    elif mutation == "needs-something-else":
        jobs["lint"] = {"runs-on": "ubuntu-24.04", "steps": [{"run": "true"}]}
        jobs["base"]["needs"] = "lint"
    else:
        jobs["tests"]["uses"] = "./.github/workflows/other.yaml"
    assert "base" in untested_pushing_jobs(workflow)


def test_the_workflows_are_valid_for_github(tmp_path):
    checker = VENV_BIN / "check-jsonschema"
    r = run([checker, "--builtin-schema", "vendor.github-workflows", *sorted(WORKFLOWS.glob("*.yaml"))])
    assert r.returncode == 0, r.stdout + r.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEST_WORKFLOW.read_text().replace("    runs-on: ubuntu-24.04", "    runs_on: ubuntu-24.04"))
    r = run([checker, "--builtin-schema", "vendor.github-workflows", broken])
    assert r.returncode == 1 and "'runs-on' is a required property" in r.stdout


def test_make_test_lints_first_unless_told_not_to():
    assert not any("pre_commit" in c for c in make_dry_run("test", DLAAS_LINT="0"))
    commands = make_dry_run("test")
    lint = next(i for i, c in enumerate(commands) if "pre_commit run --all-files" in c)
    suite = next(i for i, c in enumerate(commands) if " -m pytest" in c)
    assert commands[0].endswith("-m devstack.bootstrap --test") and 0 < lint < suite


def test_make_test_fast_needs_no_service_and_no_system_package():
    commands = make_dry_run("test-fast")
    assert commands[0].endswith("-m devstack.bootstrap --fast")
    pytest_argv = shlex.split(next(c for c in commands if " -m pytest" in c))
    # spread over the cores; only the unit tests and the deployment checks
    assert pytest_argv[pytest_argv.index("pytest") + 1 :] == ["-n", "auto", "tests/unit", "tests/deploy"]


def test_make_lint_runs_every_hook_on_every_file():
    commands = make_dry_run("lint")
    assert commands[0].endswith("-m devstack.bootstrap --fast")
    assert any(c.endswith("-m devstack.deploy_tools > /dev/null") for c in commands)
    assert commands[-1].endswith("-m pre_commit run --all-files --show-diff-on-failure")


def hooks():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    return config, [h for repo in config["repos"] for h in repo["hooks"]]


def test_every_hook_runs_a_tool_the_project_installs_and_only_checks():
    config, all_hooks = hooks()
    assert [repo["repo"] for repo in config["repos"]] == ["local"]  # nothing for pre-commit to download
    assert {h["id"] for h in all_hooks} == {
        "ruff-check",
        "ruff-format",
        "yamllint",
        "github-workflows",
        "hadolint",
        "helm-lint",
    }
    for hook in all_hooks:
        assert hook["language"] == "system"
        words = shlex.split(hook["entry"])
        tool = words[0] if words[0] != "sh" else re.search(r"exec (\S+)", words[2]).group(1)
        assert tool.startswith((".venvs/main/bin/", ".tools/")), hook["id"]
        assert "--fix" not in words or "--no-fix" in words, hook["id"]
    fmt = next(h for h in all_hooks if h["id"] == "ruff-format")
    assert "--check" in shlex.split(fmt["entry"])
    r = run([VENV_BIN / "pre-commit", "validate-config", REPO / ".pre-commit-config.yaml"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_lint_tools_are_pinned_and_installed_at_their_pins():
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pins = dict(d.split("==") for d in dev if "==" in d)
    for tool in ("ruff", "pre-commit", "yamllint", "check-jsonschema"):
        assert tool in pins, f"{tool} is not pinned in the dev extra"
        out = run([VENV_BIN / tool, "--version"])
        assert pins[tool] in out.stdout + out.stderr, (tool, out.stdout)


def test_ruff_reports_unsorted_imports_and_the_projects_line_length(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('import sys\nimport os\n\nprint(os.sep, sys.argv, "' + "x" * 120 + '")\n')
    r = run(
        [VENV_BIN / "ruff", "check", "--no-fix", "--config", REPO / "pyproject.toml", "--output-format", "concise", bad]
    )
    assert r.returncode == 1 and "I001" in r.stdout and "E501" in r.stdout
    good = tmp_path / "good.py"
    good.write_text('import os\nimport sys\n\nprint(os.sep, sys.argv, "' + "x" * 90 + '")\n')
    r = run([VENV_BIN / "ruff", "check", "--no-fix", "--config", REPO / "pyproject.toml", good])
    assert r.returncode == 0, r.stdout


def test_yamllint_checks_hand_written_yaml_and_leaves_helm_templates_to_helm(tmp_path):
    yamllint = [VENV_BIN / "yamllint", "--strict", "-c", REPO / ".yamllint.yaml"]
    duplicate = tmp_path / "values.yaml"
    duplicate.write_text("hub:\n  image: a\n  image: b\n")
    r = run([*yamllint, duplicate])
    assert r.returncode != 0 and "duplication of key" in r.stdout
    templates = sorted(str(p.relative_to(REPO)) for p in (REPO / "charts" / "dlaas" / "templates").glob("*.yaml"))
    # Go templates are not YAML: yamllint's own defaults reject them; ours skip them (helm lint checks them).
    r = run([VENV_BIN / "yamllint", "-d", "default", *templates], cwd=REPO)
    assert r.returncode != 0 and "syntax error" in r.stdout
    r = run([*yamllint, *templates], cwd=REPO)
    assert r.returncode == 0 and r.stdout == "", r.stdout
