"""Baseline files: a round trip, what makes one incomparable, and damaged or foreign files."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from gradverify import baselines
from gradverify.baselines import BaselineUnreadable, Record
from gradverify.references import Observation


def _record(seed: int = 0, fingerprint: str = "abc") -> Record:
    rng = np.random.default_rng(0)
    observation = Observation(
        (rng.standard_normal((2, 3)), np.array(1.5)),
        {"x": rng.standard_normal((2, 4)), "params['W1']": rng.standard_normal((4, 3))},
        {"x": "dx", "params['W1']": "gradient()['W1']"},
    )
    options = {"rtol": None, "kwargs": {"train_flg": "True"}}
    return Record(observation, "Net.gradient", seed, fingerprint, options)


def test_a_record_survives_the_round_trip_exactly(tmp_path) -> None:
    path = str(tmp_path / "deep" / "folder" / "net.npz")
    written = _record()
    baselines.write(path, written)
    read = baselines.read(path)
    assert (read.target, read.seed, read.fingerprint) == ("Net.gradient", 0, "abc")
    assert read.options == {"rtol": None, "kwargs": {"train_flg": "True"}}
    assert read.observation.grad_names == written.observation.grad_names
    for mine, theirs in zip(read.observation.outputs, written.observation.outputs):
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
    for name, array in written.observation.gradients.items():
        assert np.array_equal(read.observation.gradients[name], array)
    assert [p.name for p in (tmp_path / "deep" / "folder").iterdir()] == ["net.npz"]  # no temp


def test_the_header_says_what_the_file_holds(tmp_path) -> None:
    path = tmp_path / "net.npz"
    baselines.write(str(path), _record())
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
    assert header["format"] == baselines.FORMAT and header["seed"] == 0
    assert header["arrays"]["output_0"] == {"shape": [2, 3], "dtype": "float64"}
    assert header["gradients"][1] == {"name": "params['W1']", "grad_name": "gradient()['W1']"}


def test_another_seed_or_other_inputs_cannot_be_compared() -> None:
    assert baselines.incompatible(_record(), _record()) == ""
    assert baselines.incompatible(_record(seed=1), _record()).startswith(
        "was recorded with seed=1, this check runs with seed=0"
    )
    assert "fingerprint differs" in baselines.incompatible(_record(fingerprint="x"), _record())


def test_the_fingerprint_covers_inputs_weights_and_keywords() -> None:
    x, w = np.ones((2, 3)), np.zeros(3)
    base = baselines.fingerprint(["x"], [x], {"W": w}, {"train_flg": True})
    assert base == baselines.fingerprint(["x"], [x.copy()], {"W": w.copy()}, {"train_flg": True})
    changed = [
        baselines.fingerprint(["x"], [x + 1e-12], {"W": w}, {"train_flg": True}),
        baselines.fingerprint(["x"], [x], {"W": w + 1}, {"train_flg": True}),
        baselines.fingerprint(["x"], [x], {"W": w}, {"train_flg": False}),
        baselines.fingerprint(["x"], [x.astype(np.float32)], {"W": w}, {"train_flg": True}),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    with_object = [baselines.fingerprint([], [], {}, {"rng": object()}) for _ in range(2)]
    assert with_object[0] == with_object[1]  # an address is no value


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda real: b"garbage", "not an .npz archive"),
        (lambda real: real[:300], "a damaged .npz archive, BadZipFile"),
        (lambda real: _npy(), "it holds one array, not an .npz archive"),
    ],
)
def test_a_damaged_or_foreign_file_says_so_and_how_to_fix_it(tmp_path, damage, reason) -> None:
    path = tmp_path / "net.npz"
    baselines.write(str(path), _record())
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(BaselineUnreadable, match=reason) as raised:
        baselines.read(str(path))
    assert "--gradverify-regen" in str(raised.value) and "--regen" in str(raised.value)


def test_a_newer_format_or_a_missing_header_is_refused(tmp_path) -> None:
    path = tmp_path / "net.npz"
    header = {"format": baselines.FORMAT + 1, "gradverify": "9.0"}
    np.savez_compressed(path, header=np.array(json.dumps(header)))
    with pytest.raises(BaselineUnreadable, match=r"written by a newer gradverify \(9.0"):
        baselines.read(str(path))
    np.savez_compressed(path, output_0=np.ones(2))
    with pytest.raises(BaselineUnreadable, match="KeyError"):
        baselines.read(str(path))
    assert zipfile.is_zipfile(path)


def test_a_baseline_holding_objects_is_never_unpickled(tmp_path) -> None:
    path = tmp_path / "net.npz"
    np.savez(path, header=np.array([{"format": 1}], dtype=object))
    with pytest.raises(BaselineUnreadable, match="cannot be read"):
        baselines.read(str(path))


def test_an_array_unlike_its_header_is_a_damaged_file(tmp_path) -> None:
    path = tmp_path / "net.npz"
    baselines.write(str(path), _record())
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    for changed in (arrays["output_0"].astype(np.float32), np.full((2, 3), "a")):
        np.savez_compressed(path, **{**arrays, "output_0": changed})
        with pytest.raises(BaselineUnreadable, match=r"output_0 holds .* its header says float64"):
            baselines.read(str(path))


def test_a_written_file_gets_the_usual_permissions_and_no_temporary_stays(tmp_path) -> None:
    path = tmp_path / "net.npz"
    baselines.write(str(path), _record())
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]
