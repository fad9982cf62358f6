"""``ctrl_c_never_lost``: a Ctrl-C raised where Python cannot propagate it."""

from __future__ import annotations

import gc
import sys
import time

import pytest

from {{ cookiecutter.python_package }}.runner.interrupts import CtrlCNeverLost


class _RaisesWhenCollected:
    """Raises ``exc`` from its finaliser: an unraisable exception."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def __del__(self) -> None:
        raise self.exc


def _finalise(exc: BaseException) -> None:
    _RaisesWhenCollected(exc)  # dropped at once: ``__del__`` runs here
    gc.collect()


@pytest.fixture
def seen(monkeypatch):
    """The unraisable exceptions of ``_RaisesWhenCollected`` finalisers that reach
    the hook installed before the test (not those of other garbage that a
    collection happens to finalise, left by earlier tests)."""
    unraisables: list[BaseException] = []

    def hook(unraisable) -> None:
        if unraisable.object is _RaisesWhenCollected.__del__:
            unraisables.append(unraisable.exc_value)

    monkeypatch.setattr(sys, "unraisablehook", hook)
    return unraisables


def test_without_it_python_swallows_ctrl_c_in_a_finaliser(seen):
    _finalise(KeyboardInterrupt())
    assert [type(exc) for exc in seen] == [KeyboardInterrupt]


def test_held_ctrl_c_in_a_finaliser_reaches_the_main_thread(seen):
    with CtrlCNeverLost(), pytest.raises(KeyboardInterrupt):  # noqa: PT012
        _finalise(KeyboardInterrupt())
        time.sleep(1)  # the interrupt lands at the next bytecode, well before
    assert seen == []


def test_held_other_unraisable_exceptions_go_to_the_previous_hook(seen):
    error = ValueError("in a finaliser")
    with CtrlCNeverLost():
        _finalise(error)
    assert seen == [error]


def test_holds_nest_and_the_last_release_restores_the_previous_hook(seen):
    previous = sys.unraisablehook
    guard = CtrlCNeverLost()
    guard.hold()
    guard.hold()
    guard.release()
    assert guard.held
    assert sys.unraisablehook != previous
    guard.release()
    guard.release()  # one too many: nothing happens
    assert not guard.held
    assert sys.unraisablehook == previous
