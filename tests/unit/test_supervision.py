"""devstack.supervision's own rules over what supervisord reports: restarts are counted in a window and bounded,
a program supervisord gave up on is given up with the end of its log, and its configuration survives `%`.

supervisord's answers are scripted here (the pure counting logic); tests/faults/test_supervision.py runs the real
supervisord with real processes."""

from __future__ import annotations

from devstack import supervision
from devstack.supervision import Supervisord


class Scripted(Supervisord):
    """A keeper whose supervisord answers are scripted, one `programs()` answer per `check()`."""

    def __init__(self, tmp_path, answers, **options):
        super().__init__(tmp_path / "run", tmp_path / "logs", **options)
        self.answers = iter(answers)
        log = tmp_path / "svc.log"
        log.write_text("starting\nconnected\nboom: the database went away\n")
        self._pids["svc"], self._restarts["svc"], self._logs["svc"] = 100, [], log

    def programs(self):
        return {"svc": next(self.answers)}

    def rpc(self):
        raise OSError("no supervisord in a unit test")


def running(pid: int) -> dict:
    return {"name": "svc", "statename": "RUNNING", "pid": pid}


def test_a_service_restarted_more_often_than_allowed_is_given_up_with_its_log(tmp_path):
    keeper = Scripted(tmp_path, [running(100), running(101), running(102), running(103)], max_restarts=2)
    assert keeper.check() == []
    first, second = keeper.check(), keeper.check()
    assert [(e.pid, e.restarts, e.gave_up) for e in first + second] == [(101, 1, False), (102, 2, False)]
    (final,) = keeper.check()
    assert final.gave_up and final.name == "svc" and final.restarts == 3  # the third restart is one too many
    assert final.log_tail.endswith("boom: the database went away")
    assert "svc" not in keeper._pids  # not watched any more


def test_restarts_older_than_the_window_do_not_count(tmp_path, monkeypatch):
    clock = iter([0.0, 1000.0, 2000.0, 3000.0])
    monkeypatch.setattr(supervision.time, "monotonic", lambda: next(clock))
    keeper = Scripted(
        tmp_path, [running(101), running(102), running(103), running(104)], max_restarts=1, restart_window=600
    )
    events = [e for _ in range(4) for e in keeper.check()]
    assert [(e.restarts, e.gave_up) for e in events] == [(1, False)] * 4


def test_a_program_supervisord_gave_up_on_is_reported_at_once(tmp_path):
    keeper = Scripted(tmp_path, [{"name": "svc", "statename": "FATAL", "pid": 0}])
    (event,) = keeper.check()
    assert event.gave_up and "boom" in event.log_tail


def test_percent_signs_in_paths_do_not_break_supervisords_configuration(tmp_path):
    keeper = Supervisord(tmp_path / "run%x", tmp_path / "logs")
    config = keeper.config()
    assert "run%%x" in config and "run%x" not in config.replace("%%", "")
