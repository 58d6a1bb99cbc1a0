"""A program of the stack is found again by its pid file, whatever the wall clock did since."""

from __future__ import annotations

import os

import psutil
import pytest

from switchyard.stack.daemon import Daemon

pytestmark = pytest.mark.unit


def recorded(tmp_path, started: float) -> Daemon:
    daemon = Daemon("this", tmp_path / "this.pid", tmp_path / "this.log")
    daemon.pidfile.write_text(f"{os.getpid()} {started}\n")
    return daemon


def test_a_program_is_found_by_its_pid_and_start_time(tmp_path):
    assert recorded(tmp_path, psutil.Process().create_time()).pid() == os.getpid()


def test_a_boot_time_moved_by_a_clock_step_still_finds_it(tmp_path):
    # The kernel's boot time is whole seconds, and moves when the wall clock is stepped.
    assert recorded(tmp_path, psutil.Process().create_time() - 1).pid() == os.getpid()
    assert recorded(tmp_path, psutil.Process().create_time() + 1).pid() == os.getpid()


def test_a_reused_pid_is_not_taken_for_the_program(tmp_path):
    # Another program under the same pid started at another time.
    assert recorded(tmp_path, psutil.Process().create_time() - 60).pid() is None
    assert not recorded(tmp_path, psutil.Process().create_time() - 60).running()


def test_a_missing_or_garbled_pid_file_records_nothing(tmp_path):
    daemon = Daemon("this", tmp_path / "this.pid", tmp_path / "this.log")
    assert daemon.recorded() is None and daemon.pid() is None
    daemon.pidfile.write_text("not a pid\n")
    assert daemon.recorded() is None and daemon.pid() is None
