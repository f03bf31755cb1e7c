"""The Settings & about page and the access gate through Streamlit's AppTest, with real model files."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from tests.e2e.browser_support import write_tiny_pose_model

MAIN = str(Path(__file__).resolve().parents[2] / "rehab" / "app" / "main.py")
TIMEOUT_S = 60


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("REHAB_APP_DATA_DIR", str(tmp_path / "data"))
    for name in ("REHAB_APP_PASSWORD", "REHAB_APP_CONFIG", "REHAB_APP_MODEL", "REHAB_APP_ANONYMIZE_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    yield tmp_path
    st_config.set_option("server.address", previous)


def _page(path: str = "views/settings.py") -> AppTest:
    # Straight to the page: the default (live) page's WebRTC component cannot run under AppTest.
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT_S)
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def _all_text(at: AppTest) -> str:
    parts = []
    for kind in ("markdown", "caption", "info", "error", "success", "warning", "json"):
        parts += [str(e.value) for e in getattr(at, kind)]
    for frame in [*at.dataframe, *at.table]:
        parts.append(frame.value.to_string())
    return "\n".join(parts)


def test_model_metadata_and_active_provider_are_shown(app_env, monkeypatch):
    model = write_tiny_pose_model(app_env / "models" / "tiny.onnx")
    monkeypatch.setenv("REHAB_APP_MODEL", str(model))
    monkeypatch.setenv("REHAB_APP_THREADS", "1")
    at = _page()
    text = _all_text(at)
    # In words for the therapist: which model, how accurate, which device and why, where the data is.
    assert "**Model:** tiny-test-model, an avgpool+conv1x1 (test) network that finds 14 body points" in text
    assert "**How accurate:** Accuracy is limited." in text and "(PCK@0.2 = 0.0 %)" in text
    assert "**Precision:** full precision (FP32)." in text
    assert "**Exported:** 26 November 2026, rehab test." in text
    assert "**Runs on:** the processor (CPU), using 1 of the" in text and "**Why:** " in text
    assert "Everything the app keeps stays on this computer, in one folder" in text
    assert str((app_env / "data").resolve()) in text
    # No raw JSON (with its nulls), and no reduced-precision heading for an FP32 model.
    assert not at.json and "null" not in text.lower() and "Reduced-precision" not in text
    # The figures themselves are in the technical details for support.
    assert "64 × 64 px, RGB" in text and "14: right_ankle, right_knee" in text
    assert "metrics: lsp_pck@0.2" in text


@pytest.mark.parametrize("content, expected", [
    (None, "not found"),
    (b"\x08\x01garbage that is not a protobuf" * 50, "corrupt"),
])
def test_missing_or_corrupt_model_shows_a_message_and_the_app_keeps_running(app_env, monkeypatch, content, expected):
    model = app_env / "broken.onnx"
    if content is not None:
        model.write_bytes(content)
    monkeypatch.setenv("REHAB_APP_MODEL", str(model))
    at = _page()
    errors = [e.value for e in at.error]
    assert any("cannot be used" in e and str(model) in e for e in errors), errors
    assert any(expected in e for e in errors), errors
    # The rest of the page and the other pages still work; the pages that need the model say so.
    assert any("Face blurring is **on**" in s.value for s in at.success)
    at.switch_page("views/history.py").run()
    assert not at.exception and at.title[0].value == "History"
    at.switch_page("views/live.py").run()
    assert not at.exception and at.title[0].value == "Live session"
    assert any("cannot be used" in e.value for e in at.error)
    assert any("needs a working pose model" in i.value for i in at.info)


def test_turning_anonymisation_off_needs_confirmation(app_env):
    at = _page()
    assert at.session_state["rehab.anonymize"] is True
    _click(at, "Turn face blurring off…")
    # Asked, not done: blurring is still on until confirmed.
    assert at.session_state["rehab.anonymize"] is True
    assert any("faces are visible" in w.value for w in at.warning)
    _click(at, "Cancel, keep faces blurred")
    assert at.session_state["rehab.anonymize"] is True
    _click(at, "Turn face blurring off…")
    _click(at, "Yes, turn face blurring off")
    assert at.session_state["rehab.anonymize"] is False
    assert any("Face blurring is **off**" in e.value for e in at.error)
    # The choice holds across pages of the same browser session, and can be undone in one click.
    at.switch_page("views/history.py").run()
    at.switch_page("views/settings.py").run()
    assert at.session_state["rehab.anonymize"] is False
    _click(at, "Turn face blurring back on")
    assert at.session_state["rehab.anonymize"] is True


def test_anonymisation_default_comes_from_the_settings(app_env, monkeypatch):
    monkeypatch.setenv("REHAB_APP_ANONYMIZE_DEFAULT", "0")
    at = _page()
    assert at.session_state["rehab.anonymize"] is False


def _click(at: AppTest, label: str) -> None:
    buttons = [b for b in at.button if b.label == label]
    assert buttons, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    buttons[0].click().run()
    assert not at.exception, at.exception


def test_started_without_the_gateway_the_page_stays_closed_when_accounts_exist(app_env, monkeypatch):
    """The login lives at the server (rehab app); a page run some other way must not open unguarded."""
    monkeypatch.setenv("REHAB_APP_PASSWORD", "correct horse")
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT_S)
    at.switch_page("views/history.py").run()
    assert not at.exception
    assert any("must be started with `rehab app`" in e.value for e in at.error)
    assert not at.title


def test_listening_beyond_localhost_without_the_gateway_is_refused(app_env):
    st_config.set_option("server.address", "0.0.0.0")
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert any("must be started with `rehab app`" in e.value for e in at.error)
    assert not at.title


def test_invalid_app_settings_are_reported(app_env, monkeypatch):
    monkeypatch.setenv("REHAB_APP_MAX_UPLOAD_MB", "lots")
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert any("REHAB_APP_MAX_UPLOAD_MB" in e.value for e in at.error)


def test_server_log_says_which_device_runs_the_model_and_why(app_env, monkeypatch, caplog):
    """The line the page shows is logged once when the server loads a model (a fresh file: not cached)."""
    import onnxruntime as ort

    from rehab.app import about
    from rehab.runtime.session import nvidia_gpu_visible

    model = write_tiny_pose_model(app_env / "models" / "fresh.onnx", seed=7)
    monkeypatch.setenv("REHAB_APP_MODEL", str(model))
    with caplog.at_level("INFO", logger="rehab.app.common"):
        _page()
    expected = about.device_report(["CPUExecutionProvider"], ort.get_available_providers(), nvidia_gpu_visible())
    [record] = [r for r in caplog.records if r.name == "rehab.app.common" and r.getMessage() == expected.line]
    assert record.levelname == ("WARNING" if expected.gpu_unavailable else "INFO")
