"""Entry point that makes the project executable.

Both ``{{ cookiecutter.repo_name }}`` (once the package is installed) and
``python -m {{ cookiecutter.python_package }}`` behave like ``kedro run``.
"""

import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args: Any, **kwargs: Any) -> Any:
    """Configure the project and invoke its ``run`` command."""
    package_name = Path(__file__).parent.name
    configure_project(package_name)

    # In an interactive interpreter, let click return instead of exiting.
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
