"""The lab's UI login file (stack/credentials.py): created once, private, or brought along."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stack.credentials import (
    DIR_ENV,
    PASSWORD_ENV,
    credentials_file,
    ensure_lab_ui_credentials,
    lab_ui_credentials,
)


def test_first_call_creates_a_private_random_login_and_later_calls_reuse_it(
    tmp_path: Path,
) -> None:
    env = {DIR_ENV: str(tmp_path / "logins")}
    assert lab_ui_credentials("h9", env) is None
    created, new = ensure_lab_ui_credentials("h9", env)
    assert new and created.user == "penguin" and len(created.password) >= 24
    path = credentials_file("h9", env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again, new_again = ensure_lab_ui_credentials("h9", env)
    assert (again, new_again) == (created, False)
    assert lab_ui_credentials("h9", env) == created
    assert created.password not in repr(created)
    other, _ = ensure_lab_ui_credentials("other", env)
    assert other.password != created.password and other.fingerprint() != created.fingerprint()


def test_bring_your_own_login_replaces_the_file(tmp_path: Path) -> None:
    env = {DIR_ENV: str(tmp_path), PASSWORD_ENV: "my-own-password", "LAB_UI_USER": "ada"}
    mine, new = ensure_lab_ui_credentials("h9", env)
    assert not new and mine.auth == ("ada", "my-own-password")
    # Saved: later runs without the variables find the same login.
    assert lab_ui_credentials("h9", {DIR_ENV: str(tmp_path)}) == mine
    assert mine.header() == "Basic YWRhOm15LW93bi1wYXNzd29yZA=="


@pytest.mark.parametrize(
    "bad", [{PASSWORD_ENV: "short"}, {PASSWORD_ENV: "long enough", "LAB_UI_USER": "a:b"}]
)
def test_unusable_logins_are_refused(tmp_path: Path, bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        ensure_lab_ui_credentials("h9", {DIR_ENV: str(tmp_path), **bad})


def test_stack_names_cannot_escape_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        credentials_file("../x", {DIR_ENV: str(tmp_path)})


def test_without_a_mapping_the_process_environment_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    monkeypatch.setenv("LAB_UI_USER", "")  # empty: the default user
    monkeypatch.setenv(PASSWORD_ENV, "from-the-environment")
    login = lab_ui_credentials("h9")
    assert login is not None and login.auth == ("penguin", "from-the-environment")
    assert credentials_file("h9") == tmp_path / "h9.login"
