"""Wrong layers that try to fake a pass instead of computing one.

Each trick runs in the sandboxed child: patching numpy and gradverify there changes
nothing the grader computes, results.json files it writes are never read, and what
it prints only shows up as its own output.
"""

import glob
import os
import sys

import numpy as np

np.allclose = lambda *args, **kwargs: True  # every comparison "passes" (in this process)
np.testing.assert_allclose = lambda *args, **kwargs: None
try:
    import gradverify

    gradverify.check = lambda *args, **kwargs: None
except ImportError:
    pass
for folder in ["/autograder/results", "..", "../..", os.getcwd()] + glob.glob("/tmp/*"):
    try:
        with open(os.path.join(folder, "results.json"), "w") as handle:
            handle.write('{"score": 1000, "tests": []}')
    except OSError:
        pass
print("All tests PASSED")


class MulLayer:
    def forward(self, x, y):
        return x * y

    def backward(self, dout):
        return dout, dout  # wrong


class AddLayer:
    def forward(self, x, y):
        return x + y

    def backward(self, dout):
        return dout, dout


class Relu:
    def forward(self, x):
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout  # wrong: no mask


class Sigmoid:
    def forward(self, x):
        return 0 * x  # a wrong forward with a consistent backward: the reference catches it

    def backward(self, dout):
        return 0 * dout


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = np.zeros_like(self.W)  # wrong
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class SoftmaxWithLoss:
    def forward(self, x, t):
        sys.stdout.write("PASSED\n")
        return 0.0

    def backward(self, dout=1):
        return None
