"""The built Blocks: launch options, queued GPU events, the backend banner, two API sessions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ui_helpers import PHOTO, ROOT, launch, make_studio

from storymaker.ui import banner_text


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    app = make_studio(tmp_path_factory.mktemp("studio") / "data")
    yield app
    app.close()


def _fn(studio, api_name):
    for fn in studio.blocks.fns.values():
        if fn.api_name == api_name:
            return fn
    raise AssertionError(f"no event {api_name}")


def test_gpu_events_are_queued_one_at_a_time(studio):
    for name in ("render_all", "render_panel", "render_reroll", "example_project"):
        fn = _fn(studio, name)
        assert fn.concurrency_limit == 1 and fn.concurrency_id == "gpu", name
    assert _fn(studio, "cancel_render").queue is False  # cancel must not wait behind the render


def test_launch_defaults_limit_uploads_and_served_paths(studio):
    options = studio.launch_defaults
    settings = studio.context.settings
    assert options["max_file_size"] == f"{settings.max_upload_mb}mb"
    assert options["allowed_paths"] == [str(settings.data_dir.resolve())]
    assert "theme" in options and "#banner" in options["css"]


def test_draft_banner_is_one_sentence_with_the_details_one_click_away():
    from storymaker.config import Settings
    from storymaker.services.container import choose_backend

    choice = choose_backend(Settings(backend="auto"))  # this machine: no CUDA, no weights
    services = SimpleNamespace(backend_name=choice.name, backend_reason=choice.reason)
    sentence, details, css_class = banner_text(services)
    assert css_class == "draft"
    assert sentence.count(".") == 1 and "\n" not in sentence and len(sentence) < 120  # one plain sentence
    assert "stabilityai" not in sentence and "doctor" not in sentence  # no model ids up front
    assert "because no CUDA GPU is available" in details  # this machine's reason, whole, in the details
    assert "python -m storymaker doctor" in details and "python -m storymaker download" in details
    assert banner_text(SimpleNamespace(backend_name="storymaker", backend_reason="")) == ("", "", "")
    assert banner_text(SimpleNamespace(backend_name="tiny", backend_reason="x"))[2] == "tiny"


def test_banner_details_sit_in_a_closed_accordion(studio):
    import gradio as gr

    accordions = [b for b in studio.blocks.blocks.values() if isinstance(b, gr.Accordion)
                  and b.elem_id == "banner-details"]
    assert len(accordions) == 1 and accordions[0].open is False


def test_two_api_sessions_do_not_see_each_other(studio, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image

    # Gradio caches uploads by content, and a closing app deletes the files it cached (delete_cache):
    # upload a copy with its own bytes so that no other test's app shares the cached file.
    photo = tmp_path / "alice.png"
    with Image.open(PHOTO) as im:
        im.convert("RGB").save(photo, pnginfo=None, compress_level=1)
    url = launch(studio)
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    # An API client keeps its own session id (the browser keeps it in local storage).
    sid_a = alice.predict(None, api_name="/start_session")[0]
    sid_b = bob.predict(None, api_name="/start_session")[0]
    assert sid_a != sid_b and len(sid_a) == 32
    alice.predict(sid_a, handle_file(str(photo)), "Alice", "a woman in a flight suit", None, None,
                  api_name="/save_character")
    again, view_a, summary_a = alice.predict(sid_a, api_name="/start_session")[:3]
    summary_b = bob.predict(sid_b, api_name="/start_session")[2]
    assert again == sid_a  # the same id comes back: the same workspace, as after a reload
    assert view_a == f"{sid_a}/project"  # and the page shows the project opened last
    assert "Alice" in summary_a
    assert "none yet" in summary_b and "Alice" not in summary_b
    sessions = list(studio.context.sessions.root.iterdir())
    assert len([s for s in sessions if s.is_dir()]) >= 2


def test_uploads_over_the_limit_and_files_outside_the_data_dir_are_refused(studio, tmp_path):
    import httpx

    url = launch(studio).rstrip("/")
    limit = studio.context.settings.max_upload_mb
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * ((limit + 1) * 1024 * 1024))
    with big.open("rb") as handle:
        response = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.png", handle, "image/png")},
                              timeout=30)
    assert response.status_code == 413

    outside = tmp_path / "secret.txt"
    outside.write_text("not for the web")
    response = httpx.get(f"{url}/gradio_api/file={outside}", timeout=30)
    assert response.status_code in (403, 404) and "not for the web" not in response.text


def test_sessions_are_kept_locally_and_expire_on_a_space(tmp_path, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    local = make_studio(tmp_path / "local")
    monkeypatch.setenv("SPACE_ID", "someone/storymaker")
    space = make_studio(tmp_path / "space")
    try:
        assert local.context.sessions.max_age_hours == 0  # never removed
        assert space.context.sessions.max_age_hours == space.context.settings.session_max_age_hours > 0
    finally:
        local.close()
        space.close()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "on a Space" in readme and "STORYMAKER_SESSION_MAX_AGE_HOURS" in readme


def test_the_browser_key_survives_a_restart(tmp_path):
    import stat

    from storymaker.ui import browser_secret

    first = browser_secret(tmp_path)
    assert len(first) == 64 and browser_secret(tmp_path) == first  # a restarted app reads it back
    assert stat.S_IMODE((tmp_path / "browser-secret").stat().st_mode) == 0o600
    state = [b for b in make_studio(tmp_path / "d").blocks.blocks.values() if type(b).__name__ == "BrowserState"]
    assert len(state) == 1 and state[0].storage_key == "storymaker-session"


def test_the_style_menu_follows_a_style_line_typed_by_hand(studio):
    """The menu showed a typed ``style: manga`` only after a reload (QA)."""
    validate = _fn(studio, "validate_script")
    outputs = [getattr(o, "elem_id", None) for o in validate.outputs]
    view = studio.context.open_view(studio.context.sessions.new_session())
    values = dict(zip(outputs, validate.fn(view, "title: T\nstyle: manga\n\na cat on a roof\n", None)))
    assert values["style-menu"] == "manga" and "valid: 1 panel" in values["script-issues"]
    values = dict(zip(outputs, validate.fn(view, "title: T\nstyle: ink and rain\n\na cat on a roof\n", None)))
    assert values["style-menu"] is None  # free text is not a library style


def test_a_save_over_another_tabs_text_is_also_a_notice(studio):
    """The line under the editor changes at the next key, so someone typing never saw the warning
    that another tab's text was kept (QA2): it is a notice as well."""
    import warnings

    validate = _fn(studio, "validate_script")
    view = studio.context.open_view(studio.context.sessions.new_session())
    validate.fn(view, "a street at night\n", None)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        validate.fn(view, "a street at dawn\n", "an older text\n")  # this tab had loaded another text
    assert any("changed in another tab" in str(w.message) for w in shown)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        validate.fn(view, "a street at dawn, rain\n", "a street at dawn\n")  # its own next key
    assert not any("another tab" in str(w.message) for w in shown)
