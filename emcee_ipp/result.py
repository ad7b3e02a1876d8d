"""SplitResult: the ensembles of a ``run_split``, read like one emcee backend.

Runs on the client. Each ensemble's arrays fill an in-memory
``emcee.backends.Backend``; the combined view places the ensembles side by
side along the walker axis, so ``get_chain`` and the rest come from emcee's
own code and downstream scripts work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import emcee
import numpy as np

if TYPE_CHECKING:
    import arviz

__all__ = ["SplitResult", "EnsembleResult"]


@dataclass
class EnsembleResult:
    """One ensemble of a split run.

    Attributes
    ----------
    index : int
        Its position among the ensembles (walker block ``index`` of the result).
    engine_id : int
        The ipyparallel engine that finished it.
    seed : numpy.random.SeedSequence
        The stream it drew from: ``SeedSequence(seed).spawn(n)[index]``.
    backend : emcee.backends.Backend
        Its samples, with emcee's ``get_chain``, ``get_autocorr_time``, ...
    path : str or None
        Its HDF5 file, when ``backend_dir`` was given.
    restarts : int
        How often it was started again because its engine was lost.
    resumed_from : int
        The step its last attempt continued from (0: from the start).
    """

    index: int
    engine_id: int
    seed: np.random.SeedSequence
    backend: emcee.backends.Backend
    path: str | None = None
    restarts: int = 0
    resumed_from: int = 0


def backend_from_arrays(arrays: dict) -> emcee.backends.Backend:
    """An in-memory emcee Backend holding one ensemble's returned arrays."""
    chain = arrays["chain"]
    backend = emcee.backends.Backend()
    backend.reset(chain.shape[1], chain.shape[2])
    backend.iteration = chain.shape[0]
    backend.chain = chain
    backend.log_prob = arrays["log_prob"]
    backend.blobs = arrays["blobs"]
    backend.accepted = np.asarray(arrays["accepted"])
    backend.random_state = arrays["random_state"]
    return backend


class SplitResult:
    """The result of :func:`emcee_ipp.run_split`, shaped like an emcee backend.

    ``get_chain()`` has shape ``(nsteps, n_ensembles * nwalkers, ndim)``: the
    ensembles side by side along the walker axis, in index order.
    """

    def __init__(
        self,
        ensembles: list[EnsembleResult],
        parameter_names: list[str] | dict[str, int] | None = None,
    ) -> None:
        self.ensembles = sorted(ensembles, key=lambda e: e.index)
        self.parameter_names = parameter_names
        self._combined = self._combine()

    def _combine(self) -> emcee.backends.Backend:
        parts = [e.backend for e in self.ensembles]
        iterations = {b.iteration for b in parts}
        if len(iterations) != 1:
            raise ValueError(f"ensembles hold different numbers of steps: {sorted(iterations)}")
        combined = emcee.backends.Backend()
        combined.reset(sum(b.shape[0] for b in parts), parts[0].shape[1])
        combined.iteration = parts[0].iteration
        combined.chain = np.concatenate([b.chain for b in parts], axis=1)
        combined.log_prob = np.concatenate([b.log_prob for b in parts], axis=1)
        combined.accepted = np.concatenate([b.accepted for b in parts])
        if parts[0].blobs is not None:
            combined.blobs = np.concatenate([b.blobs for b in parts], axis=1)
        return combined

    # -- what emcee's backends offer -----------------------------------------

    @property
    def iteration(self) -> int:
        """Steps held per ensemble."""
        return self._combined.iteration

    @property
    def n_ensembles(self) -> int:
        return len(self.ensembles)

    @property
    def acceptance_fraction(self) -> np.ndarray:
        """Per walker, shape ``(n_ensembles * nwalkers,)``."""
        return self._combined.accepted / float(self.iteration)

    def get_chain(self, **kwargs) -> np.ndarray:
        """As ``emcee.backends.Backend.get_chain`` (``flat``, ``thin``, ``discard``)."""
        return self._combined.get_chain(**kwargs)

    def get_log_prob(self, **kwargs) -> np.ndarray:
        return self._combined.get_log_prob(**kwargs)

    def get_blobs(self, **kwargs) -> np.ndarray | None:
        return self._combined.get_blobs(**kwargs)

    def get_autocorr_time(self, **kwargs) -> np.ndarray:
        """Integrated autocorrelation time per parameter, over all walkers."""
        return self._combined.get_autocorr_time(**kwargs)

    # -- what no peer gives ------------------------------------------------------

    def rhat(self, discard: int = 0, thin: int = 1) -> np.ndarray:
        """Gelman–Rubin R-hat per parameter, between ensembles.

        Each ensemble is one chain whose draws are all its walkers' samples
        after ``discard``. Ensembles are independent, so the between-chain
        variance is meaningful; R-hat over the walkers of one ensemble is
        not, because they are coupled by the moves (arviz issue 2156).

        Returns
        -------
        ndarray of shape (ndim,)
        """
        if self.n_ensembles < 2:
            raise ValueError(
                f"rhat needs at least 2 ensembles, this result has {self.n_ensembles}; "
                "run run_split with n_ensembles >= 2."
            )
        draws = np.stack(
            [e.backend.get_chain(discard=discard, thin=thin, flat=True) for e in self.ensembles]
        )  # (m chains, n draws, ndim)
        n = draws.shape[1]
        within = draws.var(axis=1, ddof=1).mean(axis=0)
        between_over_n = draws.mean(axis=1).var(axis=0, ddof=1)
        pooled = (n - 1) / n * within + between_over_n
        return np.sqrt(pooled / within)

    def to_arviz(self, discard: int = 0, thin: int = 1) -> arviz.InferenceData:
        """An ``arviz.InferenceData`` with one chain per ensemble.

        Draws are the ensemble's samples after ``discard``, step by step and
        walker by walker within a step.
        """
        try:
            import arviz as az
        except ImportError as exc:
            raise ImportError("to_arviz needs arviz: pip install 'emcee_ipp[arviz]'") from exc
        draws = np.stack(
            [e.backend.get_chain(discard=discard, thin=thin, flat=True) for e in self.ensembles]
        )
        names = list(self.parameter_names or [f"theta_{i}" for i in range(draws.shape[2])])
        return az.from_dict(posterior={name: draws[:, :, i] for i, name in enumerate(names)})

    def __repr__(self) -> str:
        return (
            f"<SplitResult {self.n_ensembles} ensembles x {self.ensembles[0].backend.shape[0]} "
            f"walkers, {self.iteration} steps>"
        )
