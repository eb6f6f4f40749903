"""Fuzzing: check a layer over many drawn shapes and values; shrink a failure to the smallest.

`fuzz` builds the layer from each drawn case (``factory(**case.init)``), checks it,
and lets hypothesis shrink any FAIL or ERROR to the smallest dimensions and
simplest values that still fail.  Runs are deterministic: the same seed draws the
same cases and gives the same verdict (no example database, no deadline, and none
of the constants hypothesis gathers from the modules a process has imported, see
`_same_draws_in_every_process`), which is what CI and grading need.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from gradverify.checks import check, verdict_only
from gradverify.config import DEFAULT_BUDGET, CheckConfig
from gradverify.errors import InvalidArgument
from gradverify.randomness import seeded_global
from gradverify.results import CheckResult, Status
from gradverify.specs import Case, Spec, parse_spec
from gradverify.strategies import cases


@dataclass(frozen=True, repr=False)
class FuzzResult:
    """The verdict over all drawn cases; for a failure, the smallest failing case.

    ``bool(result)`` is ``result.passed``.
    """

    status: Status
    examples: int
    inconclusive: int
    seconds: float
    seed: int
    case: Case | None = None
    result: CheckResult | None = None
    reproduce: str = ""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"<FuzzResult {self.status.name} after {self.examples} example(s) seed={self.seed}>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "examples": self.examples,
            "inconclusive": self.inconclusive,
            "seconds": self.seconds,
            "seed": self.seed,
            "case": None if self.case is None else self.case.describe(),
            "result": None if self.result is None else self.result.to_dict(),
            "reproduce": self.reproduce,
        }

    def _repr_html_(self) -> str:
        """What a notebook cell shows (see `html_report`)."""
        from gradverify.html_report import fuzz_fragment

        return fuzz_fragment(self)

    def __str__(self) -> str:
        head = (
            f"fuzz: {self.status.name} after {self.examples} example(s) "
            f"({self.inconclusive} inconclusive) in {self.seconds:.2f} s | seed={self.seed}"
        )
        if self.case is None or self.result is None:
            return head
        return "\n".join(
            [
                head,
                "smallest failing case:",
                self.case.describe(),
                "",
                str(self.result),
                f"reproduce: {self.reproduce}",
            ]
        )


#: Seconds of full checking each fuzzed case may take in mode "auto" (a tenth of a
#: single check's default): 100 cases of a large layer take a minute or two, not ten.
CASE_BUDGET = DEFAULT_BUDGET / 10


class _Failed(Exception):
    """Raised inside the hypothesis test so that it shrinks the case."""


def fuzz(
    factory: Callable[..., Any],
    spec: Mapping[str, Any] | Spec,
    *,
    examples: int = 100,
    seed: int = 0,
    **options: Any,
) -> FuzzResult:
    """Check ``factory(**init)`` on `examples` cases drawn from `spec`.

    Parameters
    ----------
    factory : callable
        Builds the target from the spec's ``init`` arrays, as keywords (a layer
        class such as ``Affine`` taking ``W`` and ``b``).
    spec : mapping or Spec
        See `gradverify.specs`.
    examples : int
        How many cases to draw (more are run while shrinking a failure).
    seed : int
        Seeds the drawing and every check: the same seed, the same verdict.
    **options
        Passed to every `gradverify.check` (``rtol``, ``mode``, ...); a ``nondiff``
        adds to the spec's labels (constants the layer holds, ``running_mean``); a
        ``reference`` class or shipped name is built for each case like its target.  Each
        case gets ``budget=`` `CASE_BUDGET` seconds unless given: a fuzz run checks
        many cases, and what it is for is their shapes, not each one's last digit.

    Returns
    -------
    FuzzResult
        PASS if no case failed; otherwise the status, the smallest failing case
        and its check result.  ``print(result)`` shows them.
    """
    parsed = parse_spec(spec)
    CheckConfig(seed=seed)  # validates the seed before anything runs
    if options.get("baseline") is not None:
        raise InvalidArgument(
            "fuzz takes no `baseline`: a baseline holds one case's values, and every drawn "
            "case is new; hold the cases against a trusted implementation with reference= "
            "(a class or a shipped layer's name, built for each case)."
        )
    options.setdefault("budget", CASE_BUDGET)
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise InvalidArgument(f"`examples` must be a positive int, got examples={examples!r}.")
    seen = {"examples": 0, "inconclusive": 0}
    failure: dict[str, Any] = {}
    started = time.perf_counter()

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        report_multiple_bugs=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(cases(parsed))
    def run(case: Case) -> None:
        seen["examples"] += 1
        result = _check_case(factory, case, seed, options)
        seen["inconclusive"] += result.status is Status.INCONCLUSIVE
        if result.status in (Status.FAIL, Status.ERROR):
            failure.update(case=case, result=result)
            raise _Failed(result.status.name)

    with contextlib.suppress(_Failed), verdict_only(), _same_draws_in_every_process():
        run()  # a failure is in `failure`, shrunk
    if failure:  # the shrunk case once more, with what only a report needs (a network's layers)
        again = _check_case(factory, failure["case"], seed, options)
        if again.status is failure["result"].status:
            failure["result"] = again
    name = getattr(factory, "__qualname__", repr(factory))
    return FuzzResult(
        status=failure["result"].status if failure else Status.PASS,
        examples=seen["examples"],
        inconclusive=seen["inconclusive"],
        seconds=time.perf_counter() - started,
        seed=seed,
        case=failure.get("case"),
        result=failure.get("result"),
        reproduce=f"gradverify.fuzz({name}, spec, examples={examples}, seed={seed})",
    )


class _NoConstants:
    """An empty pool of constants, as hypothesis's providers read one."""

    def set_for_type(self, choice_type: str) -> tuple[()]:
        return ()

    def __len__(self) -> int:
        return 0


@contextlib.contextmanager
def _same_draws_in_every_process() -> Iterator[None]:
    """Keep hypothesis from mixing in constants found in the source of the local modules
    imported so far (hypothesis 6.131 and later do, now and then, for a draw): with them,
    the same seed draws other cases in a process that imported other modules (a test
    run, a notebook, a grader), and a fuzz run would not replay from its seed.  Uses
    hypothesis's internals where they are as expected; elsewhere draws as it does."""
    try:
        from hypothesis.internal.conjecture import providers

        original, cache = providers._get_local_constants, providers.CONSTANTS_CACHE.cache
    except (ImportError, AttributeError):
        yield
        return
    empty = _NoConstants()
    cache.clear()  # permitted constants, cached with whatever pool was there before
    setattr(providers, "_get_local_constants", lambda: empty)  # noqa: B010
    try:
        yield
    finally:
        setattr(providers, "_get_local_constants", original)  # noqa: B010
        cache.clear()


def _check_case(
    factory: Callable[..., Any], case: Case, seed: int, options: Mapping[str, Any]
) -> CheckResult:
    # A factory may draw its weights from np.random (the textbook's networks do): seed it
    # so the same seed builds the same layer, and leave the caller's global state as it was.
    try:
        with seeded_global(seed):
            target = factory(**case.init)
    except Exception as error:  # the factory's own failure is the case's verdict
        return CheckResult(
            target=getattr(factory, "__name__", "factory"),
            label="factory",
            status=Status.ERROR,
            seed=seed,
            error=f"factory(**init) raised {type(error).__name__}: {error}",
        )
    extra = {k: v for k, v in options.items() if k != "nondiff"}
    nondiff = (*case.nondiff, *options.get("nondiff", ()))
    return check(target, case.inputs, nondiff=nondiff, seed=seed, **extra)
