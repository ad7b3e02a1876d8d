"""One ensemble's HDF5 file for ``run_split``, whole after a kill at any moment.

Runs on the engine: ``_ensemble.run_ensemble`` samples into it. The client
reads the file with emcee alone (``split._saved_run``), as a user can.

emcee's ``HDFBackend.save_step`` changes a step's rows, the acceptance
counts, the random state and the step count one after another, and HDF5
keeps no journal: a process killed between two of them leaves a mix of two
steps, and one killed while HDF5 writes its own metadata can leave a file
HDF5 no longer opens. So each ensemble keeps two copies, and the name the
user opens is a symbolic link to a whole one::

    ensemble_0000.h5 -> .ensemble_0000.a.h5    committed: every step whole
                        .ensemble_0000.b.h5    spare: equal, or being written

    save a step  1. write it to the spare, flush        killed: the link names the old step
                 2. os.replace the link to the spare    atomic: old or new, nothing between
                 3. write it to the other copy, flush   killed: the link names the new step
    open         the copy the link names is the truth; the other becomes a
                 copy of it (a temporary file, then os.replace)
    close        the same: the link moves off a copy before HDF5 closes it

``reset`` and ``grow`` take the same three moves. Both copies are emcee
HDFBackend files (group ``mcmc``), so emcee alone opens the link, or either
copy. Reads come from memory (this is emcee's in-memory ``Backend`` too), so
a run never reads its files back. What a kill loses is the step being saved.

Cost, 16 walkers x 3 parameters, 1000 steps (``python tests/split_store_cost.py``):
about 1 ms per step, where emcee's ``HDFBackend`` (which opens and closes the
file every step) takes about 3 ms; twice the disk space. It guards against
the process dying (SIGKILL, a segfault, the OOM killer), not against the
machine losing power: nothing is fsync'ed.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable

import h5py
import numpy as np

from ._light_emcee import emcee
from .exceptions import EmceeIppError

GROUP = "mcmc"  # emcee's default group name

# Tests only (tests/split_crash_script.py): called at every point of the
# save path with the point's name and the file being written there, if any.
crash_hook: Callable[[str, str | None], None] | None = None


def _reached(point: str, writing: str | None = None) -> None:
    if crash_hook is not None:
        crash_hook(point, writing)


class EnsembleStore(emcee.backends.Backend):
    """emcee's in-memory ``Backend``; every change is also saved, atomically,
    to the HDF5 file at ``path`` (see the module docstring). Engine side.

    Parameters
    ----------
    path : str
        The name the user opens (a symbolic link once written). A plain
        file there (an older run's, or a copy) is taken over as the start.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        folder, name = os.path.split(path)
        stem = os.path.join(folder, "." + (name[:-3] if name.endswith(".h5") else name))
        self._copies = [f"{stem}.a.h5", f"{stem}.b.h5"]
        self._link_tmp = f"{stem}.link"
        self._lock = _lock(f"{stem}.lock", path)
        self._files: list[_Open | None] = [None, None]  # open for steps
        self._synced = True  # both copies hold the same step
        self._linked = self._recover()
        self._load()

    # -- emcee's Backend: memory first, then both copies ---------------------

    def reset(self, nwalkers, ndim):
        super().reset(nwalkers, ndim)
        self._commit("reset", lambda i: self._emcee_copy(i).reset(nwalkers, ndim))

    def grow(self, ngrow, blobs):
        super().grow(ngrow, blobs)
        self._commit("grow", lambda i: self._emcee_copy(i).grow(ngrow, blobs))

    def save_step(self, state, accepted):
        super().save_step(state, accepted)
        self._commit("step", lambda i: self._write_step(i, state))

    def close(self) -> None:
        """Close both copies and release the lock; the link names a whole copy."""
        spare = 1 - self._linked
        self._close(spare)
        if not self._synced:  # a save was cut short (KeyboardInterrupt)
            _copy(self._copies[self._linked], self._copies[spare])
        # HDF5 writes to a file as it closes it: not to the one the link names.
        self._point_at(spare)
        _reached("close: linked")
        self._close(1 - spare)
        self._lock.close()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the three moves -----------------------------------------------------

    def _commit(self, what: str, change: Callable[[int], None]) -> None:
        self._synced = False
        spare, other = 1 - self._linked, self._linked
        change(spare)
        _reached(f"{what}: spare written", self._copies[spare])
        self._point_at(spare)
        _reached(f"{what}: linked")
        change(other)
        _reached(f"{what}: other written", self._copies[other])
        self._synced = True

    def _write_step(self, i: int, state) -> None:
        """emcee's ``save_step`` on copy ``i``, from memory, in place (emcee's
        own replaces every attribute, churning HDF5's metadata)."""
        f = self._files[i]
        if f is None:
            f = self._files[i] = _Open(self._copies[i])
        path, row = self._copies[i], self.iteration - 1
        f.data["chain"][row] = state.coords
        _reached("step: chain", path)
        f.data["log_prob"][row] = state.log_prob
        _reached("step: log_prob", path)
        if state.blobs is not None:
            f.data["blobs"][row] = state.blobs
            _reached("step: blobs", path)
        f.data["accepted"][...] = self.accepted
        _reached("step: accepted", path)
        for k, value in enumerate(state.random_state or ()):
            f.set_attr(f"random_state_{k}", value)
        _reached("step: random_state", path)
        f.set_attr("iteration", self.iteration)
        _reached("step: iteration", path)
        f.file.flush()
        _reached("step: flushed", path)

    def _emcee_copy(self, i: int) -> emcee.backends.HDFBackend:
        self._close(i)  # emcee's reset and grow open the file themselves
        return _HDFCopy(self._copies[i], name=GROUP)

    def _close(self, i: int) -> None:
        f, self._files[i] = self._files[i], None
        if f is not None:
            f.file.close()
            _reached("closed", self._copies[i])

    def _point_at(self, i: int) -> None:
        if os.path.lexists(self._link_tmp):
            os.unlink(self._link_tmp)
        os.symlink(os.path.basename(self._copies[i]), self._link_tmp)
        os.replace(self._link_tmp, self.path)
        self._linked = i

    # -- opening -------------------------------------------------------------

    def _recover(self) -> int:
        """Make both copies whole and equal; the index of the linked one."""
        if os.path.islink(self.path):
            target = os.path.join(os.path.dirname(self.path), os.readlink(self.path))
            if target not in self._copies or not os.path.exists(target):
                raise EmceeIppError(
                    f"{self.path} links to {os.readlink(self.path)!r}, which is not there: "
                    "the run's hidden copies (.ensemble_*.h5) were moved or deleted. "
                    "Put them back, or delete the link to start this ensemble again."
                )
            linked = self._copies.index(target)
            _copy(target, self._copies[1 - linked])
            return linked
        if os.path.exists(self.path):  # a plain file: an older run's, or a copy
            for copy in self._copies:
                _copy(self.path, copy)
        else:
            for copy in self._copies:
                _create(copy)
        self._point_at(0)
        return 0

    def _load(self) -> None:
        with h5py.File(self.path, "r", locking=False) as f:
            if GROUP not in f:
                return  # not initialized: run_ensemble resets it
            g = f[GROUP]
            n = int(g.attrs["iteration"])
            super().reset(g.attrs["nwalkers"], g.attrs["ndim"])
            self.iteration = n
            self.chain = g["chain"][:n]
            self.log_prob = g["log_prob"][:n]
            self.blobs = g["blobs"][:n] if g.attrs["has_blobs"] else None
            self.accepted = g["accepted"][...]
            self.random_state = [
                v for k, v in sorted(g.attrs.items()) if k.startswith("random_state_")
            ] or None


class _Open:
    """One copy open for steps, its datasets and attributes looked up once
    (a lookup costs more than the write; measured by tests/split_store_cost.py)."""

    def __init__(self, path: str):
        self.file = h5py.File(path, "r+", locking=False)
        self.group = self.file[GROUP]
        self.data = {name: self.group[name] for name in self.group}
        self._attrs: dict = {}  # name -> its h5py.h5a.AttrID
        self._strings: dict = {}  # name -> the string last written

    def set_attr(self, name: str, value) -> None:
        if isinstance(value, str):  # the bit generator's name: written once
            if self._strings.get(name) != value:
                self.group.attrs.modify(name, value)
                self._strings[name] = value
            return
        attr = self._attrs.get(name)
        if attr is None:  # the first time, as emcee writes it
            self.group.attrs.modify(name, value)
            self._attrs[name] = h5py.h5a.open(self.group.id, name.encode())
        else:
            attr.write(np.asarray(value, dtype=attr.dtype))


class _HDFCopy(emcee.backends.HDFBackend):
    """emcee's HDFBackend on one copy, without HDF5's file lock: readers
    (the client, a user) may hold the committed copy open meanwhile."""

    def open(self, mode="r"):
        return h5py.File(self.filename, mode, locking=False)


def _new_file(path: str):
    """An empty file, owner-only whatever the umask; a leftover is replaced."""
    if os.path.lexists(path):
        os.unlink(path)
    return os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "wb")


def _copy(src: str, dst: str) -> None:
    tmp = dst + ".tmp"
    with open(src, "rb") as fin, _new_file(tmp) as fout:
        shutil.copyfileobj(fin, fout)
    _reached("copied", tmp)
    os.replace(tmp, dst)


def _create(path: str) -> None:
    tmp = path + ".tmp"
    _new_file(tmp).close()
    h5py.File(tmp, "w", locking=False).close()  # truncating keeps the mode
    _reached("created", tmp)
    os.replace(tmp, path)


def _lock(path: str, name: str):
    """An exclusive lock on ``path`` for this process's life (or until closed)."""
    import fcntl

    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EmceeIppError(
            f"{name} is being written by another process (another run_split on the "
            "same backend_dir, or an engine still running this ensemble). Wait for "
            "it to end, or stop it, then resume."
        ) from None
    return os.fdopen(fd, "wb")
