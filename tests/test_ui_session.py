"""Session folders, the Spaces shim and the app's command line: no server, no gradio needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storymaker.errors import ProjectError
from storymaker.ui.gpu import gpu
from storymaker.ui.session import SessionManager

ROOT = Path(__file__).resolve().parents[1]


def test_sessions_are_random_separate_folders(tmp_path):
    sessions = SessionManager(tmp_path / "sessions", max_age_hours=1)
    a, b = sessions.new_session(), sessions.new_session()
    assert a != b and len(a) == 32
    assert sessions.folder(a).is_dir() and sessions.folder(b).is_dir()
    assert sessions.project_dir(a).parent == sessions.folder(a)
    assert sessions.project_dir(a) != sessions.project_dir(b)


@pytest.mark.parametrize("bad", ["../etc", "", None, "A" * 32, "0" * 31, "0" * 32 + "/x"])
def test_session_ids_are_validated(tmp_path, bad):
    sessions = SessionManager(tmp_path)
    with pytest.raises(ProjectError, match="reload the page"):
        sessions.folder(bad)


def test_expired_session_says_reload(tmp_path):
    sessions = SessionManager(tmp_path)
    with pytest.raises(ProjectError, match="reload the page"):
        sessions.project_dir("0" * 32)


def test_cleanup_removes_only_old_session_folders(tmp_path):
    sessions = SessionManager(tmp_path, max_age_hours=1)
    old, fresh = sessions.new_session(), sessions.new_session()
    (tmp_path / "not-a-session").mkdir()
    past = time.time() - 2 * 3600
    os.utime(sessions.folder(old), (past, past))
    removed = sessions.cleanup()
    assert removed == [old]
    assert not sessions.folder(old).exists()
    assert sessions.folder(fresh).is_dir() and (tmp_path / "not-a-session").is_dir()


def test_using_a_session_keeps_it_alive(tmp_path):
    sessions = SessionManager(tmp_path, max_age_hours=1)
    sid = sessions.new_session()
    past = time.time() - 2 * 3600
    os.utime(sessions.folder(sid), (past, past))
    sessions.project_dir(sid)  # a request from that session
    assert sessions.cleanup() == []


def test_switch_project_keeps_the_old_project(tmp_path):
    from storymaker.services.storage import Project

    sessions = SessionManager(tmp_path)
    sid = sessions.new_session()
    first = sessions.project_dir(sid)
    Project.create(first, "First")
    new = sessions.next_project_dir(sid)
    Project.create(new, "Second")
    view = sessions.switch_project(sid, new)
    assert view == f"{sid}/{new.name}" and sessions.project_dir(view) == new
    assert sessions.project_dir(sid) == new  # the one opened last: what a reload shows
    assert first.is_dir()  # nothing is replaced
    assert {p.title for p in sessions.projects(sid)} == {"First", "Second"}
    sessions.switch_project(sid, first)
    assert sessions.project_dir(sid) == first
    with pytest.raises(ProjectError):
        sessions.switch_project(sid, tmp_path / "elsewhere")


def test_resume_finds_the_same_workspace_after_a_reload(tmp_path):
    sessions = SessionManager(tmp_path)
    sid = sessions.new_session()
    assert sessions.resume(sid) == sid  # the id the browser kept
    other = sessions.resume(None)  # a browser with nothing stored
    assert other != sid and sessions.folder(other).is_dir()
    assert sessions.resume("../" + sid) not in (sid, "../" + sid)  # a forged value gets a new one
    assert sessions.resume("0" * 32) != "0" * 32  # an expired (absent) workspace is not recreated


def test_local_workspaces_never_expire(tmp_path):
    sessions = SessionManager(tmp_path, max_age_hours=0)
    sid = sessions.new_session()
    past = time.time() - 400 * 24 * 3600
    os.utime(sessions.folder(sid), (past, past))
    assert sessions.cleanup() == [] and sessions.folder(sid).is_dir()


def test_deleting_the_current_project_opens_the_most_recent_other(tmp_path):
    from storymaker.services.storage import Project

    sessions = SessionManager(tmp_path)
    sid = sessions.new_session()
    a, b = sessions.next_project_dir(sid), sessions.next_project_dir(sid)
    Project.create(a, "A")
    Project.create(b, "B")
    sessions.switch_project(sid, b)
    sessions.delete_project(sid, b.name)
    assert not b.exists() and sessions.project_dir(sid) == a
    with pytest.raises(ProjectError, match="does not exist"):
        sessions.delete_project(sid, b.name)
    with pytest.raises(ProjectError):
        sessions.project_path(sid, "../" + a.name)


def test_gpu_shim_returns_the_function_off_spaces():
    def work(x):
        return x * 2

    wrapped = gpu(duration=10)(work)
    assert wrapped(21) == 42


def test_app_help_lists_the_options_and_imports_nothing_heavy():
    code = (
        "import sys, runpy; sys.argv=['app.py','--help']\n"
        "try:\n    runpy.run_path('app.py', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0\n"
        "heavy=[m for m in ('torch','diffusers','gradio','insightface','rembg') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--backend", "--data-dir", "--share", "--download", "--server-port", "--max-upload-mb"):
        assert option in out.stdout
    assert "HEAVY []" in out.stdout


def test_app_settings_from_command_line_and_env(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    try:
        import app
    finally:
        sys.path.remove(str(ROOT))
    monkeypatch.setenv("STORYMAKER_MAX_UPLOAD_MB", "7")
    args = app.build_parser().parse_args(["--backend", "draft", "--data-dir", str(tmp_path)])
    settings = app.settings_from_args(args)
    assert settings.backend == "draft"
    assert settings.data_dir == tmp_path
    assert settings.max_upload_mb == 7
    assert settings.sessions_dir == tmp_path / "sessions"


def test_app_reports_a_bad_setting_without_traceback(tmp_path):
    env = dict(os.environ, STORYMAKER_STEPS="many")
    out = subprocess.run([sys.executable, "app.py", "--data-dir", str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "STORYMAKER_STEPS" in out.stderr and "Traceback" not in out.stderr
