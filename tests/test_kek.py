"""KEK/DEK handling: wraps round-trip, private keys are 0600, a wrong KEK fails in one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.crypto.kek import (
    DEK_SIZE,
    KEK_PRIVATE_FILE,
    KEK_PUBLIC_FILE,
    Kek,
    dek_for,
    load_kek_public_key,
    read_wrapped_dek,
    wrap_dek_for,
    wrapped_dek_path,
)
from core.errors import IntegrityError, InvalidInputError, NotFoundError


@pytest.fixture(scope="module")
def kek() -> Kek:
    return Kek.generate()


def test_wrap_unwrap_round_trip(kek: Kek) -> None:
    dek = os.urandom(DEK_SIZE)
    wrapped = kek.wrap(dek)
    assert len(wrapped) == 384 and dek not in wrapped
    assert kek.unwrap(wrapped) == dek


def test_anyone_with_the_public_pem_can_wrap(kek: Kek) -> None:
    dek = os.urandom(DEK_SIZE)
    assert kek.unwrap(wrap_dek_for(load_kek_public_key(kek.public_key_pem), dek)) == dek


def test_wrong_kek_fails_with_one_line(kek: Kek) -> None:
    other = Kek.generate()
    with pytest.raises(IntegrityError) as caught:
        other.unwrap(kek.wrap(os.urandom(DEK_SIZE)), label="DEK of 'training-data'")
    line = caught.value.one_line()
    assert "\n" not in line and "training-data" in line and "wrong key" in line


def test_save_writes_private_key_0600_and_loads_back(tmp_path: Path, kek: Kek) -> None:
    kek.save(tmp_path)
    mode = stat.S_IMODE((tmp_path / KEK_PRIVATE_FILE).stat().st_mode)
    assert mode == 0o600
    assert (tmp_path / KEK_PUBLIC_FILE).read_bytes() == kek.public_key_pem
    assert Kek.load(tmp_path).fingerprint == kek.fingerprint


def test_repr_never_shows_key_material(kek: Kek) -> None:
    assert "PRIVATE" not in repr(kek) and kek.fingerprint[:16] in repr(kek)


def test_dek_is_created_once_and_stored_wrapped(tmp_path: Path) -> None:
    dek = dek_for(tmp_path, "training-data", create=True)
    assert len(dek) == DEK_SIZE
    path = wrapped_dek_path(tmp_path, "training-data")
    assert path.name == "training-data.dek.wrapped" and path.parent.name == "deks"
    assert dek not in path.read_bytes()
    assert read_wrapped_dek(tmp_path, "training-data") == path.read_bytes()
    assert dek_for(tmp_path, "training-data", create=True) == dek  # never replaced
    assert dek_for(tmp_path, "training-data") == dek


def test_missing_dek_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no DEK for 'nope'"):
        dek_for(tmp_path, "nope")


def test_missing_kek_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no KEK"):
        Kek.load(tmp_path)


def test_dek_under_another_workspace_kek_fails(tmp_path: Path, kek: Kek) -> None:
    dek_for(tmp_path / "a", "model", create=True)
    (tmp_path / "b").mkdir()
    kek.save(tmp_path / "b")
    stolen = wrapped_dek_path(tmp_path / "b", "model")
    stolen.parent.mkdir(parents=True)
    stolen.write_bytes(read_wrapped_dek(tmp_path / "a", "model"))
    with pytest.raises(IntegrityError, match="DEK of 'model' cannot be unwrapped"):
        dek_for(tmp_path / "b", "model")


@pytest.mark.parametrize("name", ["../etc", "A", "Upper", "a--b", "-ab", "x" * 64, "a/b"])
def test_bad_names_never_become_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="not valid"):
        dek_for(tmp_path, name, create=True)
