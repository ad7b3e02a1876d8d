"""run_split's files survive a kill at any point of a step's save (issue 20 D).

``split_crash_script.py`` does what run_split asks of an engine (sample an
ensemble into its file, then resume it further) in a forked process that
dies at one numbered point of the save path (``emcee_ipp._store``'s
``crash_hook``): by ``os._exit``, by ``os._exit`` after tearing the file
being written to half its length, or by a SIGKILL sent from outside as the
point is reached. Every point is tried. Each file left behind must open with
emcee's own ``HDFBackend``, and resuming it must give, bit for bit, the run
that was never killed: chain, log-prob, blobs, acceptance counts and random
state.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import emcee
import numpy as np
import pytest
import split_crash_script as script

HERE = pathlib.Path(__file__).resolve().parent


def _script(*args) -> str:
    done = subprocess.run(
        [sys.executable, str(HERE / "split_crash_script.py"), *args],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def points() -> list:
    """Every point of the save path of one run, in order."""
    found = [json.loads(line) for line in _script("record").splitlines()]
    assert any(p[0] == "step: linked" for p in found)  # the hook is wired in
    return found


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The run no kill cut."""
    path = tmp_path_factory.mktemp("straight") / script.FILE
    script.both_stages(str(path))
    return emcee.backends.HDFBackend(str(path), name="mcmc", read_only=True)


def _assert_same_run(a, b) -> None:
    assert a.iteration == b.iteration == script.STEPS_B
    for get in ("get_chain", "get_log_prob", "get_blobs"):
        assert np.array_equal(getattr(a, get)(), getattr(b, get)()), get
    assert np.array_equal(a.accepted, b.accepted)
    state_a, state_b = a.get_last_sample().random_state, b.get_last_sample().random_state
    assert len(state_a) == len(state_b)
    for x, y in zip(state_a, state_b):
        assert np.array_equal(x, y)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", ["exit", "exit --tear", "kill"])
def test_a_kill_anywhere_in_the_save_leaves_a_file_that_resumes_bit_identically(
    points, straight, tmp_path, how
):
    mode, *flags = how.split()
    numbers = [str(n) for n in range(1, len(points) + 1)]
    ended = json.loads(_script(mode, str(tmp_path), *flags, *numbers).splitlines()[-1])
    if mode == "exit":  # each run died where it was told to, not elsewhere
        assert set(ended.values()) == {f"exit {script.EXIT_CODE}"}, ended
    else:
        assert all(e == "signal 9" or e == "exit 0" for e in ended.values()), ended
        assert "signal 9" in ended.values()
    for n in numbers:
        path = tmp_path / n / script.FILE
        if path.exists():  # as left by the kill: emcee alone opens it
            left = emcee.backends.HDFBackend(str(path), name="mcmc", read_only=True)
            if left.initialized:
                assert 0 <= left.iteration <= script.STEPS_B, n
        script.run(str(path), script.STEPS_B)  # run_split's resume
        resumed = emcee.backends.HDFBackend(str(path), name="mcmc", read_only=True)
        try:
            _assert_same_run(resumed, straight)
        except AssertionError as exc:
            raise AssertionError(
                f"killed at point {n} {points[int(n) - 1]} ({how}): {exc}"
            ) from exc
