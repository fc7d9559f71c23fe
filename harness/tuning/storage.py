"""Tuning job studies in Optuna's RDB storage: one SQLite file per tuning job.

A tuning job named NAME is the study NAME in ``<folder>/NAME.db``. Running the same tuning
job again resumes it: its finished training jobs are kept and the rest run. The study stores
the tuning job's definition, and a resumed run must match it. Warm start copies the finished
training jobs of parent tuning jobs from the same folder into a new study.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from harness.config import TuningConfig
from harness.errors import TuningError
from harness.tuning import records
from harness.tuning.records import COMPLETED, STOPPED
from harness.tuning.space import from_hyperparameter, search_space

log = logging.getLogger(__name__)

STUDY_FILE_SUFFIX = ".db"

# Study user attributes.
DEFINITION = "definition"
RANDOM_SEED = "random_seed"

# System attributes of GridSampler that a rerun of an interrupted trial keeps, so that it
# evaluates the same grid point.
_GRID_ATTRIBUTES = ("grid_id", "search_space")


@dataclass(frozen=True)
class TuningStudy:
    """A tuning job's study: its name, storage and the random seed its samplers use."""

    name: str
    path: Path
    storage: RDBStorage
    random_seed: int
    maximize: bool

    def study(
        self, sampler: BaseSampler | None = None, pruner: BasePruner | None = None
    ) -> optuna.Study:
        """Return an Optuna Study on this storage with ``sampler`` and ``pruner``."""
        return optuna.study.Study(self.name, self.storage, sampler=sampler, pruner=pruner)

    def trials(self) -> list[FrozenTrial]:
        return self.study().get_trials(deepcopy=False)


def study_path(folder: Path, tuning_job_name: str) -> Path:
    return Path(folder) / f"{tuning_job_name}{STUDY_FILE_SUFFIX}"


def tuning_definition(
    tuning: TuningConfig, static_hyperparameters: Mapping[str, str], objective_regex: str
) -> dict[str, Any]:
    """Return what a resumed tuning job must share with its first run, as JSON data.

    Resource limits, completion criteria and warm start may change between runs.
    """
    return {
        "strategy": tuning.strategy,
        "objective_metric": tuning.objective_metric,
        "objective_type": tuning.objective_type,
        "objective_regex": objective_regex,
        "ranges": [asdict(parameter_range) for parameter_range in tuning.ranges],
        "static_hyperparameters": dict(static_hyperparameters),
        "early_stopping": tuning.early_stopping,
        "random_seed": tuning.random_seed,
        "min_resource": tuning.min_resource,
        "max_resource": tuning.max_resource,
    }


def sqlite_storage(path: Path) -> RDBStorage:
    """Return Optuna's storage in the SQLite file `path`, in write-ahead-log mode.

    Each objective value a training job prints is one transaction. With the default rollback
    journal and full sync, one took about 30 ms on a loaded 2-core machine, and the job's log
    reader fell epochs behind it; in WAL mode with synchronous=NORMAL, about 3 ms.
    """
    storage = RDBStorage(f"sqlite:///{path.resolve()}")
    sqlalchemy.event.listen(storage.engine, "connect", _write_ahead_log)
    # Connections opened before the listener did not run it.
    storage.engine.dispose()
    return storage


def _write_ahead_log(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_study(
    folder: Path, tuning_job_name: str, tuning: TuningConfig, definition: Mapping[str, Any]
) -> TuningStudy:
    """Create the tuning job's study, or load it to resume.

    Raises:
        TuningError: the stored tuning job has another definition, or a warm start parent
            cannot be read.
    """
    path = study_path(folder, tuning_job_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = sqlite_storage(path)
    # JSON round trip, so that tuples compare equal to the lists read back from storage.
    definition = json.loads(json.dumps(definition))
    maximize = tuning.objective_type == "Maximize"

    attributes = _stored_attributes(storage, tuning_job_name)
    if attributes is not None and DEFINITION not in attributes:
        # A run was killed while creating the study, before warm start finished.
        optuna.delete_study(study_name=tuning_job_name, storage=storage)
        attributes = None

    if attributes is None:
        random_seed = tuning.random_seed
        if random_seed is None:
            random_seed = secrets.randbelow(2**31)
        study = optuna.create_study(
            study_name=tuning_job_name,
            storage=storage,
            direction="maximize" if maximize else "minimize",
        )
        study.set_user_attr(RANDOM_SEED, random_seed)
        handle = TuningStudy(tuning_job_name, path, storage, random_seed, maximize)
        warm_start(handle, tuning, folder)
        study.set_user_attr(DEFINITION, definition)
        return handle

    _check_same_definition(path, tuning_job_name, attributes[DEFINITION], definition)
    handle = TuningStudy(tuning_job_name, path, storage, attributes[RANDOM_SEED], maximize)
    recover_interrupted(handle)
    return handle


def _stored_attributes(storage: RDBStorage, name: str) -> dict[str, Any] | None:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id)


def _check_same_definition(
    path: Path, name: str, stored: Mapping[str, Any], definition: Mapping[str, Any]
) -> None:
    changed = sorted(
        key for key in definition.keys() | stored.keys() if stored.get(key) != definition.get(key)
    )
    if changed:
        raise TuningError(
            f"tuning job {name} in {path} was started with a different "
            f"{', '.join(changed)}, so its training jobs cannot be resumed. Fix: give the "
            f"changed tuning job a new name, or delete {path} to start {name} over."
        )


def recover_interrupted(handle: TuningStudy) -> int:
    """Mark trials left running by a killed process as Interrupted and queue them again.

    The rerun keeps the training job's name and hyperparameters. Only one process runs a
    tuning job at a time, so every RUNNING trial found here is left over from a killed one.
    """
    study = handle.study()
    interrupted = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in interrupted:
        trial_id = handle.storage.get_trial_id_from_study_id_trial_number(
            handle.storage.get_study_id_from_name(handle.name), trial.number
        )
        handle.storage.set_trial_user_attr(
            trial_id, records.RECORD, records.interrupted_attributes()
        )
        study.tell(trial.number, state=TrialState.FAIL)
        if records.JOB not in trial.user_attrs:
            continue  # It never launched a training job.
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={records.JOB: trial.user_attrs[records.JOB]},
                system_attrs={
                    key: trial.system_attrs[key]
                    for key in _GRID_ATTRIBUTES
                    if key in trial.system_attrs
                },
            )
        )
        log.warning(
            "training job %s of tuning job %s was interrupted; it runs again",
            trial.user_attrs[records.JOB]["name"],
            handle.name,
        )
    return len(interrupted)


def warm_start(handle: TuningStudy, tuning: TuningConfig, folder: Path) -> int:
    """Copy parent tuning jobs' Completed and Stopped training jobs into the new study.

    A parent's training job is copied when every tuned hyperparameter of this tuning job has a
    value within this tuning job's range in that job's hyperparameters. Copies count as
    history for the sampler but not toward max_jobs. Returns the number copied.

    Raises:
        TuningError: a parent's study is missing or has another objective metric.
    """
    # NOTE: IdenticalDataAndAlgorithm and TransferLearning warm starts copy the same trials.
    # SageMaker's TransferLearning may weigh parent jobs differently, which is not emulated.
    distributions = search_space(tuning.ranges)
    copies: list[FrozenTrial] = []
    for parent in tuning.warm_start_parents:
        for record in _parent_records(folder, parent, handle.name, tuning):
            params = {
                parameter_range.name: from_hyperparameter(
                    parameter_range, record.hyperparameters.get(parameter_range.name, "")
                )
                for parameter_range in tuning.ranges
            }
            if None in params.values() or record.objective is None:
                continue
            copy = replace(record, parent_tuning_job=parent)
            copies.append(
                optuna.trial.create_trial(
                    value=record.objective,
                    params=params,
                    distributions=distributions,
                    user_attrs={records.RECORD: records.record_attributes(copy)},
                )
            )
    handle.study().add_trials(copies)
    if tuning.warm_start_parents:
        log.info(
            "tuning job %s starts from %d training jobs of %s",
            handle.name,
            len(copies),
            ", ".join(tuning.warm_start_parents),
        )
    return len(copies)


def _parent_records(
    folder: Path, parent: str, child: str, tuning: TuningConfig
) -> Sequence[records.TrialRecord]:
    """Return the parent tuning job's Completed and Stopped training jobs."""
    path = study_path(folder, parent)
    if parent == child:
        raise TuningError(
            f"tuning job {child} names itself in warm_start_parents. Fix: list earlier "
            "tuning jobs only."
        )
    if not path.is_file():
        raise TuningError(
            f"warm start parent tuning job {parent} not found: no file {path}. Fix: run that "
            "tuning job with the same storage folder first, or remove it from "
            "warm_start_parents."
        )

    storage = sqlite_storage(path)
    attributes = _stored_attributes(storage, parent)
    if attributes is None or DEFINITION not in attributes:
        raise TuningError(
            f"warm start parent tuning job {parent} in {path} is incomplete: its first run "
            "stopped while creating the study. Fix: run it again, or remove it from "
            "warm_start_parents."
        )
    parent_definition = attributes[DEFINITION]
    parent_objective = (parent_definition["objective_type"], parent_definition["objective_metric"])
    objective = (tuning.objective_type, tuning.objective_metric)
    if parent_objective != objective:
        raise TuningError(
            f"warm start parent tuning job {parent} has the objective "
            f"{' '.join(parent_objective)}, not {' '.join(objective)}. SageMaker requires the "
            "same objective metric for a warm start. Fix: remove it from warm_start_parents."
        )

    trials = optuna.study.Study(parent, storage).get_trials(deepcopy=False)
    own = records.own_records(trials)
    return [record for record in own if record.status in (COMPLETED, STOPPED)]
