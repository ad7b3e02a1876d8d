"""What runs under multiprocessing.Pool runs under IPyParallelPool.

User code as users lay it out (a model module beside a script run from
another folder, functions defined in ``__main__``, a notebook's sys.path),
engines that have none of the client's files, and multiprocessing.Pool's
map family.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import helpers
import numpy as np
import pytest

from emcee_ipp import EngineSetupError, IPyParallelPool, RemoteLogProbError, _shipping

HERE = pathlib.Path(__file__).parent
SCRIPT_TIMEOUT_S = 120


def _run_script(script, *args, cwd):
    """Run a user's script the way a user does, from ``cwd``; its JSON line."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_script_beside_its_model_module_runs_from_another_folder(tmp_path, transport):
    """``python project/fit.py`` from another folder: fit.py imports mymodel,
    which imports units, all beside it and none installed."""
    project = tmp_path / "project"
    shutil.copytree(HERE / "user_project", project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    checks = _run_script(project / "fit.py", transport, cwd=elsewhere)
    assert checks == {"map": True, "items": True, "emcee_identical": True}


@pytest.mark.parametrize("transport", ["direct", "ipp"])
def test_main_functions_and_classes_travel_everywhere(tmp_path, transport):
    """``__main__``'s functions and classes as the mapped function, inside
    items, in args and kwargs, in the initializer (setting a global the
    mapped function reads, multiprocessing's way), in run_split's sampler."""
    checks = _run_script(HERE / "dropin_script.py", transport, cwd=tmp_path)
    assert checks == dict.fromkeys(
        ["mapped_function", "inside_items", "initializer", "args_and_kwargs", "run_split"], True
    )


def test_engines_without_the_users_files_get_its_modules_by_value(fresh_pool_on_external, caplog):
    """The external cluster's engines run elsewhere with ``python -P``: the
    test helpers module reaches them by value, logged once, and is never
    imported there."""
    pool = fresh_pool_on_external
    x = np.random.default_rng(0).normal(size=(9, 3))
    with caplog.at_level(logging.INFO, logger="emcee_ipp"):
        for _ in range(3):
            assert pool.map(helpers.gaussian, x) == [helpers.gaussian(r) for r in x]
        items = [helpers.Offset(k) for k in range(5)]  # the module's class, in items
        assert pool.starmap(helpers.Offset.__call__, list(zip(items, x))) == [
            o(r) for o, r in zip(items, x)
        ]
    shipped = [r.getMessage() for r in caplog.records if "sent by value" in r.getMessage()]
    assert len(shipped) == 1 and "'helpers'" in shipped[0], shipped
    assert helpers.remotely(pool.client[:], helpers.has_module, "helpers") == [False] * pool.size


def test_a_site_packages_module_the_engines_lack_is_named(
    fresh_pool_on_external, tmp_path, monkeypatch
):
    """A module the client has installed (here: a folder the client counts
    as site-packages) is never shipped: the engines that lack it say so, for
    the log-prob and for an item, naming the module and the item."""
    name = f"installed_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "class Thing:\n    pass\n\ndef logp(x):\n    return -0.5 * float((x ** 2).sum())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _shipping.is_user_module("os")  # computes the system folders
    monkeypatch.setattr(
        _shipping, "_SYSTEM_DIRS", _shipping._SYSTEM_DIRS + (str(tmp_path) + os.sep,)
    )
    module = __import__(name)
    pool = fresh_pool_on_external
    with pytest.raises(
        EngineSetupError,
        match=rf"could not load the log-prob: ModuleNotFoundError: "
        rf"No module named '{name}'.*Install '{name}' where "
        "the engines run",
    ):
        pool.map(module.logp, np.zeros((4, 2)))
    items = [1.0] * 5 + [module.Thing()] + [2.0] * 2
    with pytest.raises(
        EngineSetupError,
        match=rf"could not load map item 5: ModuleNotFoundError: "
        rf"No module named '{name}'\. The log-prob never ran",
    ):
        pool.map(helpers.returns_string, items, chunksize=4)
    x = np.ones((4, 2))
    assert pool.map(helpers.gaussian, x) == [-1.0] * 4  # still usable


def test_an_item_that_cannot_be_loaded_is_named_not_blamed_on_the_log_prob(pool):
    items = [1, 2, 3, helpers.LoadsOnlyIn(os.getpid()), 5]
    with pytest.raises(
        EngineSetupError,
        match=r"could not load map item 3: RuntimeError: this "
        r"item loads only in process",
    ) as info:
        pool.map(helpers.returns_string, items)
    assert "loads only in process" in info.value.__cause__.tb
    assert pool.map(helpers.returns_int, [[1], [1, 2]]) == [1, 2]


def test_a_sys_path_entry_added_later_reaches_the_engines(pools, tmp_path, monkeypatch):
    """A notebook's ``sys.path.append`` and ``os.chdir``: the pool's own
    engines import the new module by reference and read relative paths from
    the new working directory."""
    pool = pools("direct")
    name = f"added_later_{tmp_path.name.replace('-', '_')}"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        "def read(_):\n    with open('data.txt') as f:\n        return f.read()\n"
    )
    (tmp_path / "data.txt").write_text("from the new working directory")
    monkeypatch.setattr(sys, "path", sys.path + [str(folder)])
    monkeypatch.chdir(tmp_path)
    module = __import__(name)
    assert pool.map(module.read, range(4)) == ["from the new working directory"] * 4
    assert pool.client[:].apply_sync(helpers.has_module, name) == [True] * pool.size
    assert name not in pool._shipper.by_value  # imported there, not shipped  # noqa: SLF001


def test_functions_inside_items_travel_once_per_engine(pool):
    """dynesty's shape: a function pickled by value inside every item."""
    scale = 3.0

    def inside(x):  # a closure: cloudpickle sends it by value
        return float(np.sum(x)) * scale

    def call(item):
        fn, x = item
        return fn(x)

    x = np.random.default_rng(1).normal(size=(12, 2))
    for _ in range(4):
        items = [(inside, r) for r in x]
        assert pool.map(call, items) == [call(i) for i in items]
    entries = [e for e in pool._objects.entries() if e.func is inside]  # noqa: SLF001
    assert len(entries) == 1 and entries[0].engines  # pickled once, held by the engines


# -- multiprocessing.Pool's map family --------------------------------------------


@pytest.mark.parametrize("chunksize", [1, 3, 100])
def test_map_with_chunksize_and_callback(pool, chunksize):
    x = np.random.default_rng(2).normal(size=(10, 3))
    got = []
    result = pool.map(helpers.slow_gaussian_with_pid, x, chunksize, got.append)
    assert [r[0] for r in result] == [helpers.gaussian(r) for r in x]
    assert got == [result]
    if chunksize == 1:  # ten messages, handed to whichever engine is free
        assert {r[1] for r in result} == set(pool.engine_pids.values())


def test_bad_chunksize_is_refused(pool):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=rf"chunksize={bad!r}: give a positive number"):
            pool.map(helpers.gaussian, np.ones((3, 2)), chunksize=bad)


def test_starmap_and_apply_match_multiprocessing(pool):
    pairs = [(2.0, k) for k in range(7)]
    assert pool.starmap(pow, pairs) == list(itertools.starmap(pow, pairs))
    assert pool.starmap(pow, pairs, chunksize=2) == list(itertools.starmap(pow, pairs))
    assert pool.apply(
        helpers.gaussian_shifted, (np.ones(2), 1.0), {"scale": 2.0}
    ) == helpers.gaussian_shifted(np.ones(2), 1.0, scale=2.0)
    assert pool.apply(divmod, (7, 2)) == (3, 1)


def test_imap_yields_in_order_as_chunks_finish(pool, tmp_path):
    gate = tmp_path / "gate"
    results = pool.imap(helpers.WaitsFor(gate, index=3), range(4))
    assert next(results) == 0  # while item 3 still waits
    assert not gate.exists()
    gate.touch()
    assert list(results) == [10, 20, 30]


def test_imap_unordered_yields_what_finishes_first(pool, tmp_path):
    gate = tmp_path / "gate"
    results = pool.imap_unordered(helpers.WaitsFor(gate, index=0), range(4))
    first = next(results)
    assert first != 0 and not gate.exists()
    gate.touch()
    assert sorted([first, *results]) == [0, 10, 20, 30]


def test_a_map_during_an_unfinished_imap_leaves_both_right(pool):
    x = np.arange(20, dtype=float).reshape(10, 2)
    results = pool.imap(helpers.gaussian, x, chunksize=2)
    head = [next(results), next(results)]
    assert pool.map(helpers.gaussian_np, x) == [helpers.gaussian_np(r) for r in x]
    assert head + list(results) == [helpers.gaussian(r) for r in x]


def test_an_imap_given_up_early_stops_its_work(pools):
    """Leaving an imap whose last chunk hangs interrupts that chunk: the
    next map does not wait behind it. On the direct channel only: through
    ipyparallel the interrupt is a SIGINT, which can land before the chunk
    sent a moment earlier starts (README, "Known limits")."""
    pool = pools("direct")
    x = np.array([[1.0], [2.0], [-1.0]])
    results = pool.imap(helpers.hang_if_negative, x)
    assert next(results) == helpers.gaussian(x[0])
    results.close()
    y = np.arange(6, dtype=float).reshape(3, 2)
    pool.timeout = 30  # a chunk still hanging would make this fail, not hang
    try:
        for _ in range(3):
            assert pool.map(helpers.gaussian, y, chunksize=1) == [helpers.gaussian(r) for r in y]
    finally:
        pool.timeout = None


def test_pool_is_not_iterable(pool):
    """nautilus calls list(pool) to tell one pool from a tuple of pools."""
    with pytest.raises(TypeError):
        list(pool)


def test_bound_methods_are_pickled_once(pool):
    model = helpers.CountingModel(2.0)
    x = np.random.default_rng(3).normal(size=(6, 3))
    before = helpers.CountingModel.pickles
    for _ in range(5):  # a new bound method object each time, as users write it
        assert pool.map(model.logp, x) == [model.logp(r) for r in x]
    assert helpers.CountingModel.pickles - before == 1


def test_ship_modules_is_checked():
    with pytest.raises(ValueError, match=r"ship_modules='yes': give 'auto'"):
        IPyParallelPool(1, ship_modules="yes")
    with pytest.raises(TypeError, match=r"ship_modules: 3 is neither a module nor a module name"):
        IPyParallelPool(1, ship_modules=[3])


def test_imap_raises_a_later_chunks_error_while_an_earlier_one_runs(pool, tmp_path):
    """Chunk 0 waits; chunk 1 raises: imap raises the error (naming item 1)
    without waiting for chunk 0, and the pool goes on."""
    gate = tmp_path / "gate"
    results = pool.imap(helpers.RaisesOnOneWaitsOnZero(gate), [0, 1])
    with pytest.raises(RemoteLogProbError, match=r"ValueError: item one") as info:
        next(results)
    assert info.value.params == 1 and not gate.exists()
    gate.touch()  # (through ipyparallel, chunk 0 is left to finish: see README)
    assert pool.map(helpers.gaussian, np.ones((3, 2)), chunksize=1) == [-1.0] * 3


def test_an_item_that_cannot_be_pickled_names_it(pool):
    import threading

    from emcee_ipp import SerializationError

    with pytest.raises(SerializationError, match=r"could not pickle a map item .*lock"):
        pool.map(helpers.returns_string, [1.0, threading.Lock()])
