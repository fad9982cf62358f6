"""Validate the names derived from ``project_name`` before anything is rendered.

Cookiecutter runs this script before it writes any project file, and removes the
(still empty) project directory when the script exits with a non-zero status.
"""

import keyword
import sys

REPO_NAME = "{{ cookiecutter.repo_name }}"
PYTHON_PACKAGE = "{{ cookiecutter.python_package }}"


def _package_problem(name: str) -> str | None:
    """Return why ``name`` cannot be a Python package name, or ``None`` if it can."""
    if not name:
        return "it is empty"
    if keyword.iskeyword(name):
        return "it is a Python keyword"
    if not name.isidentifier():
        if name[0].isdigit():
            return "it starts with a digit"
        return "it is not a valid Python identifier"
    if name in sys.stdlib_module_names:
        return "it would shadow a standard-library module"
    return None


def main() -> int:
    """Exit with status 1 and a one-line message if a derived name is unusable."""
    if not REPO_NAME.strip():
        print(
            "ERROR: the repository name derived from the project name is empty; "
            "choose another project name.",
            file=sys.stderr,
        )
        return 1
    problem = _package_problem(PYTHON_PACKAGE)
    if problem:
        print(
            f"ERROR: {PYTHON_PACKAGE!r} is not a valid Python package name "
            f"({problem}); choose another project name.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
