"""The project's promises about itself: environment.yml and pyproject.toml in step, CI runs the README's command."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env_pip_requirements():
    reqs, in_pip = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^\s*- pip:\s*$", line):
            in_pip = True
            continue
        m = re.match(r"^\s+- (.+)$", line)
        if in_pip and m and not m.group(1).startswith("-e"):
            reqs.append(m.group(1).strip())
    return reqs


def test_environment_yml_matches_pyproject():
    proj = _pyproject()["project"]
    wanted = {_name(r): r for r in proj["dependencies"]}
    for extra in proj["optional-dependencies"].values():
        wanted.update({_name(r): r for r in extra})
    have = {_name(r): r for r in _env_pip_requirements()}
    assert set(have) == set(wanted), (f"only in environment.yml: {sorted(set(have) - set(wanted))}; "
                                      f"only in pyproject.toml: {sorted(set(wanted) - set(have))}")
    for name, req in wanted.items():
        assert have[name].replace(" ", "") == req.replace(" ", ""), f"{name}: {have[name]!r} vs {req!r}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in ci
    assert "bash scripts/quickstart.sh" in readme


def test_torch_pinned_cpu_build_in_scripts():
    assert 'torch==${DASHKIT_TORCH:-2.13.0}' in (ROOT / "scripts" / "setup_venv.sh").read_text()
    for script in ("test.sh", "quickstart.sh"):
        assert ". scripts/setup_venv.sh" in (ROOT / "scripts" / script).read_text(), script


def test_test_script_fails_when_nothing_is_collected():
    text = (ROOT / "scripts" / "test.sh").read_text()
    assert '"$rc" -eq 5' in text and "exit 1" in text
