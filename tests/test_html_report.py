"""HTML of results: the notebook fragment, the error map behind its picture, the page."""

from __future__ import annotations

import re

import numpy as np
import pytest

import gradverify
from gradverify import compare, pictures
from gradverify.cli import main
from gradverify.html_report import page
from gradverify.results import ErrorMap, Status
from gradverify.session import summary_record
from layers_under_test import broken, reference

html5lib = pytest.importorskip("html5lib")


def _affine_check(cls, seed=0):
    rng = np.random.default_rng(seed)
    layer = cls(rng.standard_normal((30, 20)), rng.standard_normal(20))
    return gradverify.check(layer, {"x": rng.standard_normal((8, 30))})


def _tensor(result, grad_name):
    return next(t for t in result.tensors if t.grad_name == grad_name)


def _valid(text: str) -> None:
    """Parse as the HTML standard says; a strict parser raises on any parse error."""
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)


def test_error_map_of_a_wrong_row_is_red_in_that_row_only():
    result = _affine_check(broken.AffineForgetsLastFeature)
    error_map = _tensor(result, "dW").error_map
    assert error_map is not None and error_map.cell == (1, 1)
    margins = np.array(error_map.margins)
    assert margins.shape == (30, 20)
    assert np.all(margins[29] > 1) and np.all(margins[:29] <= 1)


def test_error_map_pools_by_the_maximum_so_one_wrong_element_shows():
    shape = (100, 7)
    ratio_tol = np.ones(700)
    analytic = np.zeros(700)
    numeric = np.zeros(700)
    analytic[np.ravel_multi_index((57, 3), shape)] = 5.0  # one wrong element of 700
    found = compare.agreement(analytic.reshape(shape), numeric.reshape(shape), ratio_tol)
    pooled = compare.error_map(found)
    assert pooled is not None and pooled.cell == (3, 1)
    margins = np.array(pooled.margins)
    assert margins.shape == (34, 7)
    assert margins[57 // 3, 3] == 5.0 and np.count_nonzero(margins) == 1


def test_error_map_needs_every_element():
    found = compare.agreement(np.ones(3), np.ones(3), np.ones(3), (10,), np.array([1, 4, 7]))
    assert compare.error_map(found) is None


def test_passing_gradients_carry_no_error_map():
    result = _affine_check(reference.Affine)
    assert result.passed and all(t.error_map is None for t in result.tensors)


def test_colours_darken_with_the_margin_and_turn_red_past_the_tolerance():
    inside, at, outside, far = (pictures.colour(m) for m in (1e-3, 1.0, 2.0, 1e6))
    assert at == "#ffffff"
    red = [int(c[1:3], 16) - int(c[5:7], 16) for c in (inside, outside, far)]
    assert red[0] < 0 < red[1] and red[2] > 0 and int(far[1:3], 16) < int(outside[1:3], 16)


def test_heat_map_draws_one_cell_per_pooled_block_with_its_margin():
    error_map = ErrorMap(((0.5, 3.0), (float("inf"), 0.0)), (2, 1))
    svg = pictures.heat_map(error_map, "dW", (4, 2))
    assert svg.count("<rect x=") - 1 - 24 == 4  # the frame and the legend's swatches
    assert "(2, 0) to (3, 0): error ÷ tolerance not finite" in svg
    assert "each cell the worst of 2x1" in svg


def test_a_tensor_of_four_axes_is_laid_out_as_numpy_prints_it_with_its_own_indices():
    shape = (2, 2, 5, 5)  # a convolution's dx whose border backward dropped
    wrong = np.zeros(shape)
    wrong[..., 0, :] = wrong[..., -1, :] = wrong[..., :, 0] = wrong[..., :, -1] = 1.0
    found = compare.agreement(wrong, np.zeros(shape), np.full(shape, 0.1))
    error_map = compare.error_map(found)
    assert error_map is not None and error_map.cell == (1, 1)
    margins = np.array(error_map.margins)
    assert margins.shape == (20, 5)  # (n, c, h) down, w across: each 5x5 image a block
    assert np.array_equal(margins.reshape(shape) > 1, wrong > 0)
    svg = pictures.heat_map(error_map, "dx", shape)
    assert "<title>(1, 0, 2, 4): error ÷ tolerance 10</title>" in svg
    assert "axis 3 across, axes 0-2 flattened down" in svg


def test_a_pooled_cell_names_only_elements_inside_the_tensor():
    shape = (101, 3)
    found = compare.agreement(np.ones(shape), np.zeros(shape), np.ones(shape))
    error_map = compare.error_map(found)
    assert error_map is not None and error_map.cell == (3, 1)
    svg = pictures.heat_map(error_map, "dW", shape)
    titles = re.findall(r"<title>([^<]*)</title>", svg)
    assert "(99, 2) to (100, 2): error ÷ tolerance 1" in titles
    assert not any("(101," in title for title in titles)


def test_notebook_fragment_of_a_failure_has_status_hint_table_and_pictures():
    result = _affine_check(broken.AffineForgetsLastFeature)
    fragment = result._repr_html_()
    _valid(f"<!DOCTYPE html><title>t</title>{fragment}")
    assert "gv-status gv-fail'>FAIL</span>" in fragment
    assert "hint: every wrong element is in row 29" in fragment
    assert fragment.count("class='gradverify-heatmap'") == 1  # dW only: dx and db pass
    assert "class='gradverify-scatter'" in fragment
    assert "<td class='num'>(29, " in fragment  # the worst elements as a table
    assert re.fullmatch(r"<CheckResult \S+: FAIL \(.*\) seed=0>", repr(result))


def test_notebook_fragment_of_a_pass_is_short_and_has_no_picture():
    fragment = _affine_check(reference.Affine)._repr_html_()
    assert "gv-pass'>PASS</span>" in fragment and "<svg" not in fragment


def test_fragment_escapes_what_a_target_names():
    class Evil:
        def forward(self, x):
            return x * 2

        def backward(self, dout):
            return dout

    Evil.__name__ = Evil.__qualname__ = "<script>alert(1)</script>"
    fragment = gradverify.check(Evil(), {"x": np.ones(3)})._repr_html_()
    assert "<script>" not in fragment and "&lt;script&gt;" in fragment


def test_fuzz_fragment_shows_the_smallest_case_and_its_check():
    spec = {"dims": {"N": [2, 4]}, "init": {"W": [3, 2], "b": [2]}, "inputs": {"x": ["N", 3]}}
    found = gradverify.fuzz(broken.AffineDbMean, spec, examples=5)
    fragment = found._repr_html_()
    _valid(f"<!DOCTYPE html><title>t</title>{fragment}")
    assert "smallest failing case" in fragment and "gv-fail'>FAIL</span>" in fragment


def test_page_is_valid_self_contained_html_with_every_check():
    results = [_affine_check(cls) for cls in (reference.Affine, broken.AffineForgetsLastFeature)]
    records = []
    for name, result in zip(("good", "bad"), results):
        record = summary_record(name, result)
        record["html"] = result._repr_html_()
        records.append(record)
    text = page("checks", records, ["good: warning: something"])
    _valid(text)
    assert not re.search(r"(src|href)=['\"](?!#)", text)  # nothing fetched from elsewhere
    assert "<script" not in text
    assert "2 check(s): 1 pass, 1 fail" in text and "good: warning: something" in text
    assert "<details id='check-0' open>" in text  # "bad" sorts first and is unfolded
    assert "<details id='check-1'>" in text


def test_cli_html_writes_the_page_of_every_check(tmp_path, capsys):
    path = tmp_path / "report.html"
    assert main(["check", "Affine", "ReluNoMask", "--html", str(path)]) == 1
    assert f"wrote {path}" in capsys.readouterr().err
    text = path.read_text(encoding="utf-8")
    _valid(text)
    assert text.count("<details id='check-") == 2
    assert "gv-fail'>FAIL</span> ReluNoMask" in text and "a missing mask" in text


@pytest.mark.parametrize("where", ["missing/report.html", "."])
def test_cli_html_refuses_an_unwritable_path_before_checking(tmp_path, capsys, where):
    assert main(["check", "Affine", "--html", str(tmp_path / where)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("gradverify: error: --html") and not captured.out


def test_pytest_html_page_holds_every_check_of_the_session(pytester):
    pytester.makepyfile(
        """
        import numpy as np
        from layers_under_test import broken, reference

        def test_good(gradcheck):
            gradcheck(reference.Relu(), {"x": np.array([[1.0, -2.0], [0.5, 3.0]])})

        def test_bad(gradcheck):
            gradcheck(broken.ReluNoMask(), {"x": np.array([[1.0, -2.0], [0.5, 3.0]])})
        """
    )
    result = pytester.runpytest("--gradverify-html", "report.html", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    text = (pytester.path / "report.html").read_text(encoding="utf-8")
    _valid(text)
    assert "test_good" in text and "test_bad" in text
    assert text.count("<details id='check-") == 2 and Status.FAIL.name in text


def test_a_reference_comparison_and_a_network_diagnosis_show_outside_the_folded_report():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3))
    against = gradverify.check(broken.SigmoidWrongSlope(), {"x": x}, reference="Sigmoid")
    shown = against._repr_html_().split("<details>")[0]  # before the folded full report
    assert "held against" in shown and "<th>yours</th><th>reference</th>" in shown
    net = broken.TwoLayerNetReluNoMask(20, 10, 3)
    checked = gradverify.check(net, {"x": rng.standard_normal((2, 20)), "t": np.eye(3)[[0, 2]]})
    shown = checked._repr_html_().split("<summary>full report")[0]
    assert "faulty layer" in shown and "ReluNoMask" in shown and "each layer alone" in shown


def test_the_cli_page_counts_a_failing_fuzz_run(tmp_path):
    path = tmp_path / "page.html"
    assert main(["check", "AffineDbSqueeze", "--fuzz", "20", "--html", str(path)]) == 1
    text = path.read_text(encoding="utf-8")
    assert "1 check(s): 1 fail" in text and "fuzz: FAIL on a drawn case" in text
