"""A snapshot puts back every array's bytes and every binding, keeping shared arrays shared."""

from __future__ import annotations

import numpy as np

from gradverify.state import snapshot


class Inner:
    def __init__(self, weights):
        self.W = weights
        self.cache = None


class Outer:
    def __init__(self):
        shared = np.arange(4.0)
        self.params = {"W": shared}
        self.layers = [Inner(shared)]
        self.count = 0


def test_restore_bytes_bindings_and_sharing():
    outer = Outer()
    shared = outer.params["W"]
    saved = snapshot(outer)
    shared[0] = 99.0
    outer.layers[0].cache = np.ones(3)
    outer.layers[0].W = np.zeros(4)
    outer.params["extra"] = 1
    outer.count = 5
    outer.new_attribute = "x"
    assert saved.changed_arrays() == [shared]
    saved.restore()
    assert outer.params == {"W": shared} and outer.params["W"][0] == 0.0
    assert outer.layers[0].W is shared and outer.layers[0].cache is None
    assert outer.count == 0 and not hasattr(outer, "new_attribute")


def test_nan_payload_and_negative_zero_survive():
    array = np.array([np.nan, -0.0])
    before = array.tobytes()
    saved = snapshot({"a": array})
    array[:] = 1.0
    saved.restore()
    assert array.tobytes() == before
