"""Rendering the starter: every way of creating a project, what it contains, and
the names it refuses."""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException
from packaging.requirements import Requirement

from .conftest import (
    KEDRO,
    PACKAGE,
    PROJECT_NAME,
    RENDER_TIMEOUT,
    REPO_ROOT,
    TEMPLATE_PACKAGE_DIR,
    base_env,
    render_with_cookiecutter,
    run_cmd,
)

KEDRO_VERSION = installed_version("kedro")


def kedro_new(cwd: Path, *args: str, input: str | None = None):
    return run_cmd(
        [KEDRO, "new", "--starter", str(REPO_ROOT), *args],
        cwd=cwd,
        timeout=RENDER_TIMEOUT,
        env=base_env(),
        input=input,
    )


def cookiecutter_cli(cwd: Path, *args: str):
    return run_cmd(
        [sys.executable, "-m", "cookiecutter", str(REPO_ROOT), "--no-input", *args],
        cwd=cwd,
        timeout=RENDER_TIMEOUT,
        env=base_env(),
    )


def only_child(folder: Path) -> Path:
    children = list(folder.iterdir())
    assert len(children) == 1, f"expected one rendered project in {folder}: {children}"
    return children[0]


def parse_requirements(project: Path) -> dict[str, Requirement]:
    reqs = {}
    for raw in (project / "requirements.txt").read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)  # raises InvalidRequirement on a bad line
        reqs[req.name.lower()] = req
    return reqs


def assert_is_project(project: Path, package: str, project_name: str) -> None:
    """Minimal check that ``project`` is a rendered Kedro project of ``package``."""
    assert project.is_dir(), project
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["tool"]["kedro"]["package_name"] == package
    assert pyproject["tool"]["kedro"]["project_name"] == project_name
    for module in ("__init__", "settings", "pipeline_registry", "cli"):
        assert (project / "src" / package / f"{module}.py").is_file(), module
    assert (project / "src" / package / "runner" / "dask_runner.py").is_file()


# --------------------------------------------------------------------------- #
# The rendered tree
# --------------------------------------------------------------------------- #
# Every file a rendered project has, no more, no less: a file added to the
# template (or left in it, such as a backup or a cache) shows up here.
LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)
EXPECTED_TREE = sorted(
    [
        ".github/workflows/ci.yml",
        ".gitignore",
        "README.md",
        "benchmarks/compare_runners.py",
        "conf/README.md",
        "conf/base/catalog.yml",
        "conf/base/parameters_data_processing.yml",
        "conf/base/parameters_data_science.yml",
        "conf/dask/parameters.yml",
        "conf/local/.gitkeep",
        "conf/logging.yml",
        *(f"data/{layer}/.gitkeep" for layer in LAYERS),
        "docs/kedro-viz-workflow.png",
        "docs/run-timeline.png",
        "notebooks/.gitkeep",
        "pyproject.toml",
        "requirements.txt",
        *(
            f"src/{PACKAGE}/{module}.py"
            for module in (
                "__init__",
                "__main__",
                "cli",
                "pipeline_registry",
                "settings",
            )
        ),
        f"src/{PACKAGE}/pipelines/__init__.py",
        *(
            f"src/{PACKAGE}/pipelines/{pipeline}/{module}.py"
            for pipeline in ("data_processing", "data_science", "reporting")
            for module in ("__init__", "nodes", "pipeline")
        ),
        *(
            f"src/{PACKAGE}/runner/{module}.py"
            for module in (
                "__init__",
                "addresses",
                "cluster",
                "compat",
                "dask_runner",
                "errors",
                "follow",
                "forkserver",
                "graph",
                "interrupts",
                "local_workers",
                "node_logs",
                "plugins",
                "preimport",
                "recording",
                "run_params",
                "run_record",
                "services",
                "submit",
                "versions",
                "worker",
                "worker_setup",
            )
        ),
        "tests/__init__.py",
        "tests/test_compare_runners.py",
        "tests/test_run.py",
        "tests/pipelines/__init__.py",
        *(
            f"tests/pipelines/test_{pipeline}.py"
            for pipeline in ("data_processing", "data_science", "reporting")
        ),
        "tests/runner/__init__.py",
        "tests/runner/conftest.py",
        "tests/runner/strangers.py",
        *(
            f"tests/runner/test_{module}.py"
            for module in (
                "addresses",
                "cli",
                "cluster",
                "compat",
                "dask_runner",
                "graph",
                "interrupts",
                "node_logs",
                "recording",
                "run_record",
                "submit",
                "versions",
                "worker",
            )
        ),
    ]
)


def test_rendered_tree_is_exactly_the_project(rendered_project):
    rendered = sorted(
        path.relative_to(rendered_project).as_posix()
        for path in rendered_project.rglob("*")
        if path.is_file()
    )
    assert rendered == EXPECTED_TREE


def test_pyproject_declares_the_kedro_project(rendered_project):
    pyproject = tomllib.loads((rendered_project / "pyproject.toml").read_text())
    kedro_table = pyproject["tool"]["kedro"]
    assert kedro_table["package_name"] == PACKAGE
    assert kedro_table["project_name"] == PROJECT_NAME
    assert kedro_table["kedro_init_version"] == KEDRO_VERSION


def test_dask_env_points_at_a_local_scheduler(rendered_project):
    params = yaml.safe_load((rendered_project / "conf/dask/parameters.yml").read_text())
    assert params["dask_client"] == {"address": "tcp://127.0.0.1:8786"}


def test_yaml_files_parse(rendered_project):
    for path in [
        *rendered_project.glob("conf/**/*.yml"),
        *rendered_project.glob(".github/**/*.yml"),
    ]:
        yaml.safe_load(path.read_text())


def test_no_unrendered_placeholders(rendered_project):
    for path in rendered_project.rglob("*"):
        rel = path.relative_to(rendered_project).as_posix()
        assert "{{" not in rel and "cookiecutter" not in rel, rel
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        assert "{{ cookiecutter" not in text and "{{cookiecutter" not in text, rel
        assert "cookiecutter.python_package" not in text, rel


@pytest.mark.parametrize("rel", ["runner/dask_runner.py", "cli.py"])
def test_copied_without_render(rendered_project, rel):
    template = TEMPLATE_PACKAGE_DIR / rel
    rendered = rendered_project / "src" / PACKAGE / rel
    assert rendered.read_bytes() == template.read_bytes()


def test_python_files_compile(rendered_project):
    for path in (rendered_project / "src").rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


# --------------------------------------------------------------------------- #
# requirements.txt
# --------------------------------------------------------------------------- #
def test_requirements_default_kedro_version(rendered_project):
    reqs = parse_requirements(rendered_project)
    assert str(reqs["kedro"].specifier) == "~=1.7.0"
    assert "dask" in reqs or "distributed" in reqs, sorted(reqs)


def test_requirements_follow_kedro_version(tmp_path):
    project = render_with_cookiecutter(
        tmp_path, project_name="Pinned", kedro_version="1.8.2"
    )
    reqs = parse_requirements(project)
    assert str(reqs["kedro"].specifier) == "~=1.8.2"
    assert reqs["kedro"].specifier.contains("1.8.5")
    assert not reqs["kedro"].specifier.contains("1.9.0")


def test_requirements_satisfied_by_this_environment(rendered_project):
    """The project's pins accept the versions this suite runs it with."""
    unsatisfied = []
    for name, req in parse_requirements(rendered_project).items():
        try:
            have = installed_version(name)
        except PackageNotFoundError:
            continue
        if not req.specifier.contains(have, prereleases=True):
            unsatisfied.append(f"{req} (installed {have})")
    assert not unsatisfied, unsatisfied


# --------------------------------------------------------------------------- #
# Ways of rendering
# --------------------------------------------------------------------------- #
def test_cookiecutter_api(rendered_project):
    assert rendered_project.name == "dask-demo"
    assert_is_project(rendered_project, PACKAGE, PROJECT_NAME)


def test_kedro_new_with_name(tmp_path):
    result = kedro_new(tmp_path, "--name", "My Proj", "--telemetry", "no")
    assert result.returncode == 0, result.describe()
    project = tmp_path / "my-proj"
    assert_is_project(project, "my_proj", "My Proj")
    assert (project / ".telemetry").read_text().strip() == "consent: false"


def test_kedro_new_with_config_and_output_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    config = tmp_path / "cfg.yml"
    config.write_text(
        yaml.safe_dump({"project_name": "Config Proj", "output_dir": str(out)})
    )
    result = kedro_new(cwd, "--config", str(config))
    assert result.returncode == 0, result.describe()
    assert_is_project(out / "config-proj", "config_proj", "Config Proj")
    assert list(cwd.iterdir()) == []


def test_kedro_new_interactive(tmp_path):
    # Extra blank lines accept the default of any further prompt.
    result = kedro_new(tmp_path, input="Interactive Proj\n" + "\n" * 5)
    assert result.returncode == 0, result.describe()
    assert "Project Name" in result.output  # the prompt from prompts.yml was shown
    assert_is_project(
        tmp_path / "interactive-proj", "interactive_proj", "Interactive Proj"
    )


def test_cookiecutter_cli_defaults(tmp_path):
    result = cookiecutter_cli(tmp_path, "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.describe()
    project = only_child(tmp_path / "out")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    package = pyproject["tool"]["kedro"]["package_name"]
    assert package.isidentifier()
    assert_is_project(project, package, pyproject["tool"]["kedro"]["project_name"])
    assert str(parse_requirements(project)["kedro"].specifier) == "~=1.7.0"
    assert pyproject["tool"]["kedro"]["kedro_init_version"] == "1.7.0"


def test_cookiecutter_cli_with_context(tmp_path):
    result = cookiecutter_cli(
        tmp_path, "--output-dir", str(tmp_path), "project_name=Cli Proj"
    )
    assert result.returncode == 0, result.describe()
    assert_is_project(tmp_path / "cli-proj", "cli_proj", "Cli Proj")


def test_name_with_spaces_hyphens_underscores(tmp_path):
    result = kedro_new(tmp_path, "--name", "my-proj_x y", "--telemetry", "no")
    assert result.returncode == 0, result.describe()
    project = only_child(tmp_path)
    assert_is_project(project, "my_proj_x_y", "my-proj_x y")


# --------------------------------------------------------------------------- #
# Invalid names
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", ["a", "bad!name"])
def test_kedro_new_rejects_name_failing_prompt_regex(tmp_path, name):
    result = kedro_new(tmp_path, "--name", name, "--telemetry", "no")
    assert result.returncode != 0, result.describe()
    assert f"'{name}' is an invalid value for project name" in result.output
    assert list(tmp_path.iterdir()) == []


def test_interactive_kedro_new_rejects_name_failing_prompt_regex(tmp_path):
    result = kedro_new(tmp_path, input="bad!name\n")
    assert result.returncode != 0, result.describe()
    assert "'bad!name' is an invalid value for project name" in result.output
    assert list(tmp_path.iterdir()) == []


def _one_clear_line(output: str, needle: str) -> str:
    """The hook explains the problem in exactly one line naming ``needle``.
    (Cookiecutter itself may add its own traceback of FailedHookException.)"""
    lines = [line for line in output.splitlines() if needle in line]
    assert len(lines) == 1, f"expected one line naming {needle!r}:\n{output}"
    return lines[0]


@pytest.mark.parametrize(
    ("name", "package"), [("1st project", "1st_project"), ("class", "class")]
)
def test_hook_rejects_bad_package_via_cookiecutter_cli(tmp_path, name, package):
    result = cookiecutter_cli(
        tmp_path, "--output-dir", str(tmp_path), f"project_name={name}"
    )
    assert result.returncode != 0, result.describe()
    _one_clear_line(result.output, f"'{package}'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["1st project", "class"])
def test_hook_rejects_bad_package_via_cookiecutter_api(tmp_path, name, capfd):
    with pytest.raises(FailedHookException):
        render_with_cookiecutter(tmp_path, project_name=name)
    assert list(tmp_path.iterdir()) == []
    err = capfd.readouterr().err
    assert name.replace(" ", "_") in err, err


@pytest.mark.parametrize(
    ("name", "package"), [("1st project", "1st_project"), ("class", "class")]
)
def test_kedro_new_rejects_bad_package(tmp_path, name, package):
    result = kedro_new(tmp_path, "--name", name, "--telemetry", "no")
    assert result.returncode != 0, result.describe()
    _one_clear_line(result.output, f"'{package}'")
    assert list(tmp_path.iterdir()) == []
