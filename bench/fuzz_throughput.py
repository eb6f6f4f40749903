"""Fuzzing throughput: examples checked per second, drawing, building and checking included.

Two layer sizes: an Affine over small varying shapes, and a TwoLayerNet whose sizes
are drawn up to the textbook's MNIST scale (input 784, hidden 50, 10 classes) with a
small batch, checked in the default auto mode (each case with `fuzzing.CASE_BUDGET`
seconds of full checking; W1 mostly by projections).

    python bench/fuzz_throughput.py
"""

from __future__ import annotations

from gradverify.fuzzing import fuzz
from layers_under_test.reference import Affine, TwoLayerNet

EXAMPLES = 200

AFFINE = {
    "dims": {"N": [1, 8], "D": [1, 8], "M": [1, 8]},
    "init": {"W": ["D", "M"], "b": ["M"]},
    "inputs": {"x": ["N", "D"]},
}
NETWORK = {
    "dims": {"N": [1, 4], "D": [392, 784], "H": [25, 50], "C": 10},
    "init": {"input_size": "D", "hidden_size": "H", "output_size": "C"},
    "inputs": {"x": ["N", "D"], "t": {"shape": ["N", "C"], "domain": "onehot", "classes": "C"}},
}


def main() -> None:
    for name, factory, spec, examples in (
        ("Affine (dims 1-8)", Affine, AFFINE, EXAMPLES),
        ("TwoLayerNet (D 392-784, H 25-50)", TwoLayerNet, NETWORK, EXAMPLES // 4),
    ):
        found = fuzz(factory, spec, examples=examples)
        rate = found.examples / found.seconds
        print(
            f"{name:<34} {found.status.name:<5} {found.examples:>4} examples "
            f"in {found.seconds:6.2f} s = {rate:7.1f} examples/s"
        )


if __name__ == "__main__":
    main()
