"""SqlStore: the :class:`~tunery.store.base.Store` on SQLAlchemy 2.

Backends: SQLite (the embedded default), PostgreSQL (psycopg 3), MySQL/MariaDB (PyMySQL).
Created by :func:`tunery.store.open_store` (which resolves the URL and migrates the schema);
used by the controller, the metrics collector's DBManager service, the SDK and the CLI.

Every public method is one transaction (:meth:`SqlStore.session_scope`), and reads use
column selects, never ORM objects, so listing ten thousand trials stays cheap; trials and
observation logs are separate tables, and no trial query touches the logs. Database errors
are translated once, in ``session_scope``: failures that mean the database cannot serve now
(:func:`is_unavailable`: disconnects, shutdowns, lock timeouts) become
:class:`StoreUnavailableError` (retryable; deadlocks and serialisation failures are retried
here first), other database errors :class:`StoreError`, name clashes
:class:`AlreadyExistsError`, missing rows :class:`NotFoundError`. Messages name the
database with its password hidden.

Namespaces: a SqlStore is bound to one namespace (``default`` unless told otherwise), as
Katib's Experiments and Trials are namespaced resources: every query filters on it and every
insert writes it, so the same experiment and trial names live side by side in two namespaces
and never see each other. :meth:`SqlStore.in_namespace` gives a view bound to another
namespace on the same engine (the operator takes one per Experiment). Only
:meth:`SqlStore.list_namespaces` (the operator's gauges) and :meth:`SqlStore.trial_namespaces`
(Katib's DBManager and EarlyStopping wires, which name a trial alone) look across namespaces.

Timestamps: callers pass tz-aware datetimes (naive ones are rejected, as their zone is
unknown); the database holds naive UTC; results are tz-aware UTC.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from tunery.store import migrations
from tunery.store.base import (
    DEFAULT_NAMESPACE,
    ExperimentRecord,
    Store,
    TrialChanges,
    TrialRecord,
    TrialUpdate,
    check_key,
    check_namespace,
    utcnow,
)
from tunery.store.derived import ObjectiveRule
from tunery.store.engine import WRITE_OPTION, create_engine, describe_url, resolve_url
from tunery.store.errors import (
    AlreadyExistsError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)
from tunery.store.models import (
    NAME_LENGTH,
    REASON_LENGTH,
    experiments,
    observation_logs,
    trials,
)
from tunery.trials import ZERO_TIME, Observation, TrialCondition

trials_table = trials  # for methods whose argument is named ``trials``

log = logging.getLogger(__name__)

UTC = dt.UTC

_CONFLICT_RETRIES = 4
_IN_CHUNK = 500  # names per IN (...) list, well under every backend's parameter limit

_TRIAL_COLUMNS = (
    trials.c.name,
    trials.c.assignment,
    trials.c.condition,
    trials.c.reason,
    trials.c.message,
    trials.c.labels,
    trials.c.created_at,
    trials.c.start_time,
    trials.c.completion_time,
    trials.c.runner_handle,
    trials.c.observation,
    trials.c.early_stopping_rules,
)
_OBSERVATION_COLUMNS = (
    observation_logs.c.metric_name,
    observation_logs.c.value,
    observation_logs.c.step,
    observation_logs.c.time,
    observation_logs.c.numeric_value,
)

P = ParamSpec("P")
R = TypeVar("R")


def open_sql_store(
    url: str | URL | None = None, *, migrate: bool = True, namespace: str = DEFAULT_NAMESPACE
) -> SqlStore:
    """Resolve ``url`` (see :func:`tunery.store.engine.resolve_url`), connect, migrate; the
    store is bound to ``namespace``.

    Raises:
        ValueError: the URL is malformed or names an unsupported backend.
        StoreUnavailableError: the database cannot be reached (retryable).
        StoreError: the schema cannot be brought to this tunery's revision.
    """
    check_namespace(namespace)
    resolved = resolve_url(url)
    engine = create_engine(resolved)
    try:
        if migrate:
            migrations.upgrade(engine)
        else:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
    except sa_exc.SQLAlchemyError as exc:
        engine.dispose()
        raise _translate(exc, resolved, "opening the store") from exc
    except TimeoutError as exc:
        engine.dispose()
        raise StoreUnavailableError(f"{describe_url(resolved)}: {exc}") from exc
    except BaseException:
        engine.dispose()
        raise
    return SqlStore(engine, namespace=namespace)


def _retry_conflicts(
    method: Callable[Concatenate[SqlStore, P], R],
) -> Callable[Concatenate[SqlStore, P], R]:
    """Re-run a write method (one whole transaction) after a deadlock or serialisation
    failure, which the database resolved by rolling this transaction back."""

    @functools.wraps(method)
    def wrapper(self: SqlStore, *args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(_CONFLICT_RETRIES):
            try:
                return method(self, *args, **kwargs)
            except StoreUnavailableError as exc:
                if attempt == _CONFLICT_RETRIES - 1 or not _is_conflict(exc.__cause__):
                    raise
                log.debug("transaction conflict in %s, retrying: %s", method.__name__, exc)
                time.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    return wrapper


class SqlStore(Store):
    """The Store on a SQLAlchemy engine, bound to one namespace. Thread-safe; safe across
    processes."""

    def __init__(self, engine: sa.Engine, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        check_namespace(namespace)
        self._engine = engine
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._closed = False
        self._owns_engine = True
        self._engine_closed = [False]  # shared with the views: the engine was disposed
        self._namespace = namespace

    @property
    def namespace(self) -> str:
        """The namespace this store reads and writes."""
        return self._namespace

    def in_namespace(self, namespace: str) -> SqlStore:
        """A view of the same database bound to ``namespace``, sharing this store's engine and
        connection pool. Closing a view closes only the view; closing the store it came from
        closes the engine under every view.

        Raises:
            ValueError: the namespace is empty or longer than 63 characters.
        """
        if namespace == self._namespace:
            return self
        check_namespace(namespace)
        view = SqlStore.__new__(SqlStore)
        view.__dict__.update(self.__dict__)
        view._namespace = namespace
        view._owns_engine = False
        view._closed = False
        return view

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return describe_url(self._engine.url)

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql`` (MySQL and MariaDB)."""
        return self._engine.dialect.name

    def __repr__(self) -> str:
        if self._namespace == DEFAULT_NAMESPACE:
            return f"SqlStore({self.url!r})"
        return f"SqlStore({self.url!r}, namespace={self._namespace!r})"

    # -- transactions ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def session_scope(self, what: str, *, write: bool = False) -> Iterator[sa.Connection]:
        """One transaction on a pooled connection: commit on success, roll back on error,
        always give the connection back; SQLAlchemy errors become store errors.

        ``what`` names the operation in error messages. ``write`` begins SQLite
        transactions IMMEDIATE (see :data:`tunery.store.engine.WRITE_OPTION`).
        """
        if self._closed or self._engine_closed[0]:
            raise StoreError(f"{what}: the store {self.url} is closed")
        engine = self._write_engine if write else self._engine
        try:
            with engine.begin() as connection:
                yield connection
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc, self._engine.url, what) from exc

    # -- experiments ----------------------------------------------------------------------------
    @_retry_conflicts
    def create_experiment(self, name: str, spec: Mapping[str, Any]) -> ExperimentRecord:
        _check_name("experiment", name)
        now = _db_time(utcnow(), "created_at")
        what = f"create experiment {name!r}"
        with self.session_scope(what, write=True) as connection:
            try:
                connection.execute(
                    sa.insert(experiments).values(
                        namespace=self._namespace,
                        name=name,
                        spec=_plain(spec, "spec"),
                        status={},
                        created_at=now,
                        updated_at=now,
                    )
                )
            except sa_exc.IntegrityError as exc:
                if _integrity_kind(exc) != "unique":
                    raise
                raise AlreadyExistsError(
                    f"experiment {name!r} already exists{self._in_ns()}"
                ) from exc
            return self._fetch_experiment(connection, name)

    def get_experiment(self, name: str) -> ExperimentRecord:
        with self.session_scope(f"get experiment {name!r}") as connection:
            return self._fetch_experiment(connection, name)

    def list_experiments(self) -> list[ExperimentRecord]:
        with self.session_scope("list experiments") as connection:
            rows = connection.execute(
                _experiment_select()
                .where(experiments.c.namespace == self._namespace)
                .order_by(experiments.c.id)
            ).all()
        return [_experiment_record(row) for row in rows]

    @_retry_conflicts
    def update_experiment(
        self,
        name: str,
        *,
        spec: Mapping[str, Any] | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> ExperimentRecord:
        values: dict[str, Any] = {"updated_at": _db_time(utcnow(), "updated_at")}
        if spec is not None:
            values["spec"] = _plain(spec, "spec")
        if status is not None:
            values["status"] = _plain(status, "status")
        with self.session_scope(f"update experiment {name!r}", write=True) as connection:
            connection.execute(
                sa.update(experiments).where(self._experiment_is(name)).values(**values)
            )
            return self._fetch_experiment(connection, name)

    @_retry_conflicts
    def delete_experiment(self, name: str) -> None:
        with self.session_scope(f"delete experiment {name!r}", write=True) as connection:
            experiment_id = self._experiment_id(connection, name)
            trial_names = sa.select(trials.c.name).where(trials.c.experiment_id == experiment_id)
            connection.execute(
                sa.delete(observation_logs).where(
                    observation_logs.c.namespace == self._namespace,
                    observation_logs.c.trial_name.in_(trial_names),
                )
            )
            # The trials go by the foreign key's ON DELETE CASCADE.
            connection.execute(sa.delete(experiments).where(experiments.c.id == experiment_id))

    # -- trials ---------------------------------------------------------------------------------
    @_retry_conflicts
    def create_trial(self, trial: TrialRecord) -> TrialRecord:
        values = _trial_row(trial)
        what = f"create trial {trial.name!r}"
        with self.session_scope(what, write=True) as connection:
            experiment_id = self._experiment_id(connection, trial.experiment_name)
            values["experiment_id"] = experiment_id
            values["namespace"] = self._namespace
            values["change_seq"] = self._next_seq(connection, experiment_id)
            if (trial.observation or {}).get("metrics"):
                rule = self._objective_rule(connection, experiment_id)
                values["objective_value"] = None if rule is None else rule.value(trial.observation)
            try:
                connection.execute(sa.insert(trials).values(**values))
            except sa_exc.IntegrityError as exc:
                kind = _integrity_kind(exc)
                if kind == "foreign_key":  # the experiment was deleted meanwhile
                    raise NotFoundError(
                        f"experiment {trial.experiment_name!r} not found{self._in_ns()} "
                        f"(creating trial {trial.name!r})"
                    ) from exc
                if kind != "unique":
                    raise
                raise AlreadyExistsError(
                    f"trial {trial.name!r} already exists{self._in_ns()}"
                ) from exc
            return self._fetch_trial(connection, trial.name)

    def create_trials(self, trials: Sequence[TrialRecord]) -> int:
        """Multi-row INSERTs in one transaction; the trials take consecutive change counters.

        Raises:
            ValueError: the trials are not all of one experiment, or a value is invalid.
            AlreadyExistsError: a name is taken (nothing is created).
        """
        if not trials:
            return 0
        self.write_trials(trials, ())
        return len(trials)

    def _insert_trials(
        self, connection: sa.Connection, trials: Sequence[TrialRecord], known: Mapping[str, int]
    ) -> None:
        """Insert ``trials`` (one experiment's; its id is looked up unless ``known``)."""
        experiment_name = trials[0].experiment_name
        experiment_id = known.get(experiment_name)
        if experiment_id is not None:
            last = self._next_seq(connection, experiment_id, len(trials))
        elif connection.dialect.update_returning:  # the id and the counters in one statement
            bumped = connection.execute(
                sa.update(experiments)
                .where(self._experiment_is(experiment_name))
                .values(trial_seq=experiments.c.trial_seq + len(trials))
                .returning(experiments.c.id, experiments.c.trial_seq)
            ).one_or_none()
            if bumped is None:
                raise NotFoundError(f"experiment {experiment_name!r} not found{self._in_ns()}")
            experiment_id, last = int(bumped[0]), int(bumped[1])
        else:
            experiment_id = self._experiment_id(connection, experiment_name)
            last = self._next_seq(connection, experiment_id, len(trials))
        with_metrics = any((t.observation or {}).get("metrics") for t in trials)
        rule = self._objective_rule(connection, experiment_id) if with_metrics else None
        rows = []
        for offset, trial in enumerate(trials):
            row = _trial_row(trial)
            row["experiment_id"] = experiment_id
            row["namespace"] = self._namespace
            row["change_seq"] = last - len(trials) + 1 + offset
            row["objective_value"] = None if rule is None else rule.value(trial.observation)
            rows.append(row)
        try:
            for start in range(0, len(rows), _IN_CHUNK):
                connection.execute(sa.insert(trials_table), rows[start : start + _IN_CHUNK])
        except sa_exc.IntegrityError as exc:
            if _integrity_kind(exc) != "unique":
                raise
            raise AlreadyExistsError(
                f"a trial of the {len(trials)} to create already exists: {exc.orig}"
            ) from exc

    def get_trial(self, name: str) -> TrialRecord:
        with self.session_scope(f"get trial {name!r}") as connection:
            return self._fetch_trial(connection, name)

    def list_trials(
        self, experiment_name: str, conditions: Iterable[TrialCondition] | None = None
    ) -> list[TrialRecord]:
        """Trials of an experiment in creation order; observation logs are not read.

        Raises:
            NotFoundError: the experiment does not exist.
        """
        query = sa.select(*_TRIAL_COLUMNS)
        if conditions is not None:
            wanted = sorted({_condition(c).value for c in conditions})
            query = query.where(trials.c.condition.in_(wanted))
        with self.session_scope(f"list trials of experiment {experiment_name!r}") as connection:
            experiment_id = self._experiment_id(connection, experiment_name)
            rows = connection.execute(
                query.where(trials.c.experiment_id == experiment_id).order_by(trials.c.id)
            ).all()
        return [_trial_record(row, experiment_name) for row in rows]

    def count_trials(self, experiment_name: str) -> dict[TrialCondition, int]:
        """Trials per current condition, in one aggregate query."""
        query = sa.select(trials.c.condition, sa.func.count()).group_by(trials.c.condition)
        with self.session_scope(f"count trials of experiment {experiment_name!r}") as connection:
            experiment_id = self._experiment_id(connection, experiment_name)
            rows = connection.execute(query.where(trials.c.experiment_id == experiment_id)).all()
        return {TrialCondition(condition): count for condition, count in rows}

    def list_trial_changes(self, experiment_name: str, since: int | None) -> TrialChanges:
        """Trials written after change counter ``since`` (all when None), in creation order,
        from the (experiment, change_seq) index; see :meth:`Store.list_trial_changes`.

        Each trial write bumps ``experiments.trial_seq`` first, holding that row's lock until
        it commits, so a change with counter ``n`` commits only after every change below
        ``n``: once one statement sees ``n``, it sees all of them, and the highest counter
        it returned is where the next call starts.

        The experiment itself is read in the same transaction (``TrialChanges.experiment``):
        a reconcile step reads both at once, and sees them as of one moment.
        """
        query = sa.select(*_TRIAL_COLUMNS, trials.c.change_seq)
        what = f"list trial changes of experiment {experiment_name!r}"
        with self.session_scope(what) as connection:
            found = connection.execute(
                _experiment_select()
                .add_columns(experiments.c.id)
                .where(self._experiment_is(experiment_name))
            ).one_or_none()
            if found is None:
                raise NotFoundError(f"experiment {experiment_name!r} not found{self._in_ns()}")
            query = query.where(trials.c.experiment_id == found[-1])
            if since is not None:
                query = query.where(trials.c.change_seq > since)
            rows = connection.execute(query.order_by(trials.c.id)).all()
        seq = max((row[-1] for row in rows), default=since or 0)
        return TrialChanges(
            [_trial_record(row, experiment_name) for row in rows],
            int(seq),
            _experiment_record(found[:-1]),
        )

    def best_trial(self, experiment_name: str) -> TrialRecord | None:
        """The best trial by one indexed query (see :meth:`Store.best_trial`). The first trial
        of the ranking counts only if it has an objective value: when none has one (or every
        one breaks a constraint, which leaves its value unset) the ranking starts with the
        unranked trials, and there is no best."""
        found = self.list_trials_by_objective(experiment_name, limit=1, exclude_failed=True)
        if not found or not found[0].observation.get("metrics"):
            return None
        rule = ObjectiveRule.from_spec(self.get_experiment(experiment_name).spec)
        return (
            found[0] if rule is not None and rule.value(found[0].observation) is not None else None
        )

    def list_trials_by_objective(
        self,
        experiment_name: str,
        *,
        limit: int | None = None,
        offset: int = 0,
        exclude_failed: bool = False,
    ) -> list[TrialRecord]:
        """Trials ranked by ``objective_value`` in the database; the trials without one follow
        in creation order (see :meth:`Store.list_trials_by_objective`)."""
        what = f"list trials of experiment {experiment_name!r} by objective"
        with self.session_scope(what) as connection:
            row = connection.execute(
                sa.select(experiments.c.id, experiments.c.spec).where(
                    self._experiment_is(experiment_name)
                )
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"experiment {experiment_name!r} not found{self._in_ns()}")
            experiment_id, spec = row
            rule = ObjectiveRule.from_spec(spec)
            value = trials.c.objective_value
            base = sa.select(*_TRIAL_COLUMNS).where(trials.c.experiment_id == experiment_id)
            if exclude_failed:
                base = base.where(trials.c.condition != TrialCondition.FAILED.value)
            # Two index range scans, (experiment, objective_value) then (experiment, id):
            # the ranked trials, then those without a value; no sort of the whole table.
            ranked = base.where(value.is_not(None)).order_by(
                value.desc() if rule is not None and rule.maximize else value.asc(),
                trials.c.id,
            )
            unranked = base.where(value.is_(None)).order_by(trials.c.id)
            rows = list(connection.execute(_page(ranked, offset, limit)).all())
            if limit is None or len(rows) < limit:
                if not rows:  # the page starts past the ranked trials: how far past?
                    offset -= connection.execute(
                        sa.select(sa.func.count()).select_from(
                            ranked.order_by(None).with_only_columns(trials.c.id).subquery()
                        )
                    ).scalar_one()
                else:
                    offset = 0
                rest = None if limit is None else limit - len(rows)
                rows += connection.execute(_page(unranked, max(offset, 0), rest)).all()
        return [_trial_record(row, experiment_name) for row in rows]

    def update_trial(
        self,
        name: str,
        *,
        condition: TrialCondition | None = None,
        reason: str | None = None,
        message: str | None = None,
        start_time: dt.datetime | None = None,
        completion_time: dt.datetime | None = None,
        runner_handle: Mapping[str, Any] | None = None,
        observation: Mapping[str, Any] | None = None,
        early_stopping_rules: Sequence[Mapping[str, Any]] | None = None,
        expect_condition: Iterable[TrialCondition] | None = None,
    ) -> TrialRecord:
        update = TrialUpdate(
            name,
            condition=condition,
            reason=reason,
            message=message,
            start_time=start_time,
            completion_time=completion_time,
            runner_handle=runner_handle,
            observation=observation,
            early_stopping_rules=early_stopping_rules,
            expect_condition=None if expect_condition is None else tuple(expect_condition),
        )
        return self.update_trials([update])[0]

    def update_trials(
        self,
        updates: Sequence[TrialUpdate],
        observations: Mapping[str, Sequence[Observation]] | None = None,
    ) -> list[TrialRecord]:
        """One transaction: the trials' experiments and change counters are read and taken
        once per experiment, each trial's UPDATE (a compare-and-set with ``expect_condition``)
        runs, returning the row where the database can (SQLite, PostgreSQL), and the records
        not returned so are read back in one query; ``observations`` are inserted in it (one
        multi-row INSERT, as :meth:`add_observations`)."""
        return self.write_trials((), updates, observations)

    @_retry_conflicts
    def write_trials(
        self,
        created: Sequence[TrialRecord],
        updates: Sequence[TrialUpdate],
        observations: Mapping[str, Sequence[Observation]] | None = None,
    ) -> list[TrialRecord]:
        """:meth:`update_trials` and :meth:`create_trials` in one transaction (see
        :meth:`Store.write_trials`)."""
        if created and len({t.experiment_name for t in created}) != 1:
            raise ValueError(
                "create_trials takes trials of one experiment, got "
                f"{sorted({t.experiment_name for t in created})}"
            )
        rows = self._observation_rows(observations or {})
        changes = [(u, _update_values(u)) for u in updates]
        names = list(dict.fromkeys(u.name for u in updates))
        if created and not updates:
            what = f"create {len(created)} trials of experiment {created[0].experiment_name!r}"
        elif names:
            what = (
                f"update trial {names[0]!r}" if len(names) == 1 else f"update {len(names)} trials"
            )
        elif rows:
            what = f"add {len(rows)} observations"
        else:
            return []
        found: dict[str, TrialRecord] = {}
        known: dict[str, int] = {}  # experiment name -> id, from the updates
        write = bool(created) or bool(rows) or any(v for _, v in changes)
        with self.session_scope(what, write=write) as connection:
            if rows:
                connection.execute(sa.insert(observation_logs), rows)
            if any(values for _, values in changes):
                owned = self._experiment_ids_of(connection, names)
                known = {experiment: eid for eid, experiment in owned.values()}
                found = self._apply_updates(connection, changes, owned)
            if names:
                unread = [name for name in names if name not in found]
                if unread:
                    found.update(self._fetch_trials(connection, unread))
            if created:
                self._insert_trials(connection, created, known)
        missing = [name for name in names if name not in found]
        if missing:
            raise NotFoundError(f"trial {missing[0]!r} not found{self._in_ns()}")
        return [found[u.name] for u in updates]

    def _apply_updates(
        self,
        connection: sa.Connection,
        changes: Sequence[tuple[TrialUpdate, dict[str, Any]]],
        owned: Mapping[str, tuple[int, str]],
    ) -> dict[str, TrialRecord]:
        """Run each update (``owned``: each trial's experiment id and name); returns the
        records the database returned (where it can)."""
        owners = {name: experiment_id for name, (experiment_id, _) in owned.items()}
        returning = connection.dialect.update_returning
        counts: dict[int, int] = {}
        for update, values in changes:
            if values:
                counts[owners[update.name]] = counts.get(owners[update.name], 0) + 1
        next_seq = {
            experiment_id: self._next_seq(connection, experiment_id, count) - count + 1
            for experiment_id, count in counts.items()
        }
        rules: dict[int, ObjectiveRule | None] = {}
        found: dict[str, TrialRecord] = {}
        for update, values in changes:
            if not values:
                continue
            experiment_id = owners[update.name]
            values["change_seq"] = next_seq[experiment_id]
            next_seq[experiment_id] += 1
            if "observation" in values:
                if experiment_id not in rules:
                    rules[experiment_id] = self._objective_rule(connection, experiment_id)
                rule = rules[experiment_id]
                values["objective_value"] = (
                    None if rule is None else rule.value(values["observation"])
                )
            statement = sa.update(trials).where(self._trial_is(update.name))
            if update.expect_condition is not None:
                # Compare-and-set: applied only if the condition still matches.
                expected = sorted({_condition(c).value for c in update.expect_condition})
                statement = statement.where(trials.c.condition.in_(expected))
            if not returning:
                connection.execute(statement.values(**values))
                continue
            row = connection.execute(
                statement.values(**values).returning(*_TRIAL_COLUMNS)
            ).one_or_none()
            if row is not None:  # else the compare-and-set left it: as found before
                found[update.name] = _trial_record(row, owned[update.name][1])
        return found

    # -- observation logs -----------------------------------------------------------------------
    @_retry_conflicts
    def add_observations(self, trial_name: str, observations: Sequence[Observation]) -> int:
        """Append observations with one multi-row INSERT; returns how many were written.

        The trial need not exist (as with Katib's DBManager). ``numeric`` is stored when
        finite; NaN, infinities and non-numeric text are stored as text only, and read back
        re-parsed from it.
        """
        rows = self._observation_rows({trial_name: observations})
        if not rows:
            return 0
        what = f"add {len(rows)} observations of trial {trial_name!r}"
        with self.session_scope(what, write=True) as connection:
            connection.execute(sa.insert(observation_logs), rows)
        return len(rows)

    def _observation_rows(
        self, observations: Mapping[str, Sequence[Observation]]
    ) -> list[dict[str, Any]]:
        """The observation_logs rows of ``observations`` (trial name → rows), checked."""
        rows = []
        for trial_name, batch in observations.items():
            _check_name("trial", trial_name)
            rows += [_observation_row(self._namespace, trial_name, obs) for obs in batch]
        for metric_name in {row["metric_name"] for row in rows}:
            _check_name("metric", metric_name)
        return rows

    def get_observations(
        self,
        trial_name: str,
        metric_name: str | None = None,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
    ) -> list[Observation]:
        """Observations ordered by (time, id). As in Katib, an empty ``metric_name`` does not
        filter, and the time bounds are inclusive."""
        query = sa.select(*_OBSERVATION_COLUMNS).where(self._logs_of(trial_name))
        if metric_name:
            query = query.where(observation_logs.c.metric_name == metric_name)
        if start_time is not None:
            query = query.where(observation_logs.c.time >= _db_time(start_time, "start_time"))
        if end_time is not None:
            query = query.where(observation_logs.c.time <= _db_time(end_time, "end_time"))
        query = query.order_by(observation_logs.c.time, observation_logs.c.id)
        with self.session_scope(f"get observations of trial {trial_name!r}") as connection:
            rows = connection.execute(query).all()
        return [_observation(row) for row in rows]

    def get_observations_for_trials(
        self, trial_names: Iterable[str], metric_name: str | None = None
    ) -> dict[str, list[Observation]]:
        """Observations of many trials in a few queries; each list ordered by (time, id)."""
        names = list(dict.fromkeys(trial_names))
        found: dict[str, list[Observation]] = {name: [] for name in names}
        if not names:
            return found
        columns = (observation_logs.c.trial_name, *_OBSERVATION_COLUMNS)
        with self.session_scope(f"get observations of {len(names)} trials") as connection:
            for start in range(0, len(names), _IN_CHUNK):
                query = sa.select(*columns).where(
                    observation_logs.c.trial_name.in_(names[start : start + _IN_CHUNK]),
                    observation_logs.c.namespace == self._namespace,
                )
                if metric_name:
                    query = query.where(observation_logs.c.metric_name == metric_name)
                query = query.order_by(
                    observation_logs.c.trial_name, observation_logs.c.time, observation_logs.c.id
                )
                for row in connection.execute(query):
                    found[row[0]].append(_observation(row[1:]))
        return found

    def observation_counts(self, trial_name: str) -> dict[str, int]:
        query = (
            sa.select(observation_logs.c.metric_name, sa.func.count())
            .where(self._logs_of(trial_name))
            .group_by(observation_logs.c.metric_name)
        )
        with self.session_scope(f"count observations of trial {trial_name!r}") as connection:
            return {name: count for name, count in connection.execute(query).all()}

    @_retry_conflicts
    def delete_observations(self, trial_name: str) -> None:
        statement = sa.delete(observation_logs).where(self._logs_of(trial_name))
        with self.session_scope(
            f"delete observations of trial {trial_name!r}", write=True
        ) as connection:
            connection.execute(statement)

    # -- lifecycle ------------------------------------------------------------------------------
    def ping(self) -> None:
        with self.session_scope("ping") as connection:
            connection.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        """Close the store; a view (:meth:`in_namespace`) closes only itself."""
        self._closed = True
        if self._owns_engine:
            self._engine_closed[0] = True
            self._engine.dispose()

    # -- across namespaces ----------------------------------------------------------------------
    def list_namespaces(self) -> list[str]:
        """Every namespace holding an experiment, sorted (whatever this store is bound to)."""
        query = sa.select(experiments.c.namespace).distinct()
        with self.session_scope("list namespaces") as connection:
            return sorted(str(ns) for ns in connection.execute(query).scalars())

    def trial_namespaces(self, trial_name: str) -> list[str]:
        """Every namespace holding a trial named ``trial_name``, sorted (whatever namespace
        this store is bound to): how Katib's DBManager, given a trial name alone, finds the
        trial (one index lookup)."""
        query = sa.select(trials.c.namespace).where(trials.c.name == trial_name)
        with self.session_scope(f"find the namespaces of trial {trial_name!r}") as connection:
            return sorted(str(ns) for ns in connection.execute(query).scalars())

    # -- helpers (inside a transaction) ----------------------------------------------------------
    def _in_ns(self) -> str:
        """`` in namespace 'x'`` for messages, empty in the default namespace."""
        if self._namespace == DEFAULT_NAMESPACE:
            return ""
        return f" in namespace {self._namespace!r}"

    def _experiment_is(self, name: str) -> sa.ColumnElement[bool]:
        return sa.and_(experiments.c.namespace == self._namespace, experiments.c.name == name)

    def _trial_is(self, name: str) -> sa.ColumnElement[bool]:
        return sa.and_(trials.c.name == name, trials.c.namespace == self._namespace)

    def _logs_of(self, trial_name: str) -> sa.ColumnElement[bool]:
        return sa.and_(
            observation_logs.c.trial_name == trial_name,
            observation_logs.c.namespace == self._namespace,
        )

    def _experiment_id(self, connection: sa.Connection, name: str) -> int:
        found = connection.execute(
            sa.select(experiments.c.id).where(self._experiment_is(name))
        ).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"experiment {name!r} not found{self._in_ns()}")
        return int(found)

    @staticmethod
    def _next_seq(connection: sa.Connection, experiment_id: int, count: int = 1) -> int:
        """Take the experiment's next ``count`` trial change counters (returns the last); the
        row stays locked (so later changes wait) until this transaction ends."""
        bump = (
            sa.update(experiments)
            .where(experiments.c.id == experiment_id)
            .values(trial_seq=experiments.c.trial_seq + count)
        )
        if connection.dialect.update_returning:
            return int(connection.execute(bump.returning(experiments.c.trial_seq)).scalar_one())
        connection.execute(bump)
        return int(
            connection.execute(
                sa.select(experiments.c.trial_seq).where(experiments.c.id == experiment_id)
            ).scalar_one()
        )

    @staticmethod
    def _objective_rule(connection: sa.Connection, experiment_id: int) -> ObjectiveRule | None:
        spec = connection.execute(
            sa.select(experiments.c.spec).where(experiments.c.id == experiment_id)
        ).scalar_one()
        return ObjectiveRule.from_spec(spec)

    def _experiment_ids_of(
        self, connection: sa.Connection, names: Sequence[str]
    ) -> dict[str, tuple[int, str]]:
        """The experiment (id, name) of each named trial.

        Raises:
            NotFoundError: a trial does not exist (nothing has been written yet).
        """
        owners: dict[str, tuple[int, str]] = {}
        for start in range(0, len(names), _IN_CHUNK):
            chunk = names[start : start + _IN_CHUNK]
            query = (
                sa.select(trials.c.name, trials.c.experiment_id, experiments.c.name)
                .join_from(trials, experiments, trials.c.experiment_id == experiments.c.id)
                .where(trials.c.name.in_(chunk), trials.c.namespace == self._namespace)
            )
            owners.update(
                (name, (int(eid), experiment))
                for name, eid, experiment in connection.execute(query)
            )
        for name in names:
            if name not in owners:
                raise NotFoundError(f"trial {name!r} not found{self._in_ns()}")
        return owners

    def _fetch_trials(
        self, connection: sa.Connection, names: Sequence[str]
    ) -> dict[str, TrialRecord]:
        found: dict[str, TrialRecord] = {}
        for start in range(0, len(names), _IN_CHUNK):
            rows = connection.execute(
                sa.select(*_TRIAL_COLUMNS, experiments.c.name)
                .join_from(trials, experiments, trials.c.experiment_id == experiments.c.id)
                .where(
                    trials.c.name.in_(names[start : start + _IN_CHUNK]),
                    trials.c.namespace == self._namespace,
                )
            ).all()
            for row in rows:
                record = _trial_record(row, row[-1])
                found[record.name] = record
        return found

    def _fetch_experiment(self, connection: sa.Connection, name: str) -> ExperimentRecord:
        row = connection.execute(
            _experiment_select().where(self._experiment_is(name))
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"experiment {name!r} not found{self._in_ns()}")
        return _experiment_record(row)

    def _fetch_trial(self, connection: sa.Connection, name: str) -> TrialRecord:
        row = connection.execute(
            sa.select(*_TRIAL_COLUMNS, experiments.c.name)
            .join_from(trials, experiments, trials.c.experiment_id == experiments.c.id)
            .where(self._trial_is(name))
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"trial {name!r} not found{self._in_ns()}")
        return _trial_record(row, row[-1])


def _trial_row(trial: TrialRecord) -> dict[str, Any]:
    """A new trial's column values, checked and converted (its experiment, change counter and
    objective value are the caller's to add)."""
    _check_name("trial", trial.name)
    return {
        "name": trial.name,
        "assignment": _plain(trial.assignment, "assignment"),
        "condition": _condition(trial.condition).value,
        "reason": _check_reason(trial.reason),
        "message": _check_text("message", trial.message),
        "labels": _plain(trial.labels, "labels"),
        "created_at": _db_time(trial.created_at, "created_at"),
        "start_time": _db_time_or_none(trial.start_time, "start_time"),
        "completion_time": _db_time_or_none(trial.completion_time, "completion_time"),
        "runner_handle": _plain(trial.runner_handle, "runner_handle"),
        "observation": _plain(trial.observation, "observation"),
        "early_stopping_rules": _plain(list(trial.early_stopping_rules), "early_stopping_rules"),
    }


def _update_values(update: TrialUpdate) -> dict[str, Any]:
    """The column values an update sets, checked and converted (empty: nothing to write)."""
    values: dict[str, Any] = {}
    if update.condition is not None:
        values["condition"] = _condition(update.condition).value
    if update.reason is not None:
        values["reason"] = _check_reason(update.reason)
    if update.message is not None:
        values["message"] = _check_text("message", update.message)
    if update.start_time is not None:
        values["start_time"] = _db_time(update.start_time, "start_time")
    if update.completion_time is not None:
        values["completion_time"] = _db_time(update.completion_time, "completion_time")
    if update.runner_handle is not None:
        values["runner_handle"] = _plain(update.runner_handle, "runner_handle")
    if update.observation is not None:
        values["observation"] = _plain(update.observation, "observation")
    if update.early_stopping_rules is not None:
        values["early_stopping_rules"] = _plain(
            list(update.early_stopping_rules), "early_stopping_rules"
        )
    return values


def _page(query: sa.Select[Any], offset: int, limit: int | None) -> sa.Select[Any]:
    if offset:
        query = query.offset(offset)
    return query if limit is None else query.limit(limit)


# -- value conversion ---------------------------------------------------------------------------
def _check_name(kind: str, name: object) -> None:
    check_key(f"{kind} name", name, NAME_LENGTH)


def _check_text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"trial {field} must be a str, got {type(value).__name__} {value!r}")
    return value


def _check_reason(reason: str) -> str:
    _check_text("reason", reason)
    if len(reason) > REASON_LENGTH:
        raise ValueError(
            f"trial reason {reason[:40]!r}... is {len(reason)} characters long; "
            f"the store allows at most {REASON_LENGTH} (put details in the message)"
        )
    return reason


def _condition(value: TrialCondition | str) -> TrialCondition:
    try:
        return TrialCondition(value)
    except ValueError:
        allowed = ", ".join(c.value for c in TrialCondition)
        raise ValueError(f"unknown trial condition {value!r}; expected one of {allowed}") from None


def _db_time(value: dt.datetime, field: str) -> dt.datetime:
    """Aware datetime → naive UTC, as stored."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware, got naive {value.isoformat()}")
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError(f"{field} {value.isoformat()} is out of range in UTC") from None


def _db_time_or_none(value: dt.datetime | None, field: str) -> dt.datetime | None:
    return None if value is None else _db_time(value, field)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


_JSON_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any, field: str) -> Any:
    """A document for a JSON column: mappings as dicts, sequences as lists, JSON scalars.

    Raises:
        TypeError: a value JSON cannot hold, naming the field and the path to it.
    """
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{field}: key {key!r} is {type(key).__name__}, not str")
            plain[key] = _plain(item, f"{field}.{key}")
        return plain
    if isinstance(value, list | tuple):
        return [_plain(item, f"{field}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{field} is {type(value).__name__} {value!r}, which JSON cannot hold "
        "(use str, int, float, bool, None, lists and mappings)"
    )


def _observation_row(namespace: str, trial_name: str, obs: Observation) -> dict[str, Any]:
    when = obs.time
    if when.tzinfo is UTC:
        when = when.replace(tzinfo=None)
    else:
        when = _db_time(when, f"time of observation {obs.metric_name!r}")
    value = obs.value
    if not isinstance(value, str):
        raise TypeError(
            f"observation {obs.metric_name!r} value must be the reported text (str), "
            f"got {type(value).__name__} {value!r}"
        )
    numeric = obs.numeric if obs.numeric is not None else Observation.parse_numeric(value)
    if numeric is not None and (not math.isfinite(numeric) or _is_negative_zero(numeric)):
        # Not every backend holds these (MySQL has no NaN/inf, SQLite drops the sign of
        # -0.0): store the text only, re-parsed on read, the same on every backend.
        numeric = None
    return {
        "namespace": namespace,
        "trial_name": trial_name,
        "time": when,
        "metric_name": obs.metric_name,
        "value": value,
        "numeric_value": numeric,
        "step": int(obs.step),
    }


def _is_negative_zero(value: float) -> bool:
    return value == 0.0 and math.copysign(1.0, value) < 0


def _observation(row: Sequence[Any]) -> Observation:
    metric_name, value, step, when, numeric = row
    return Observation(
        metric_name=metric_name,
        value=value,
        step=step,
        time=ZERO_TIME if when is None else when.replace(tzinfo=UTC),
        numeric=numeric if numeric is not None else Observation.parse_numeric(value),
    )


def _experiment_select() -> sa.Select[Any]:
    return sa.select(
        experiments.c.name,
        experiments.c.spec,
        experiments.c.status,
        experiments.c.created_at,
        experiments.c.updated_at,
    )


def _experiment_record(row: Sequence[Any]) -> ExperimentRecord:
    name, spec, status, created_at, updated_at = row
    return ExperimentRecord(
        name=name,
        spec=spec,
        status=status,
        created_at=created_at.replace(tzinfo=UTC),
        updated_at=updated_at.replace(tzinfo=UTC),
    )


def _trial_record(row: Sequence[Any], experiment_name: str) -> TrialRecord:
    return TrialRecord(
        name=row[0],
        experiment_name=experiment_name,
        assignment=row[1],
        condition=TrialCondition(row[2]),
        reason=row[3],
        message=row[4],
        labels=row[5],
        created_at=row[6].replace(tzinfo=UTC),
        start_time=_aware(row[7]),
        completion_time=_aware(row[8]),
        runner_handle=row[9],
        observation=row[10],
        early_stopping_rules=tuple(row[11]),
    )


# -- error translation --------------------------------------------------------------------------
def _translate(exc: sa_exc.SQLAlchemyError, url: URL, what: str) -> StoreError:
    """The store error for a SQLAlchemy error, naming the database without its password."""
    original = getattr(exc, "orig", None)
    detail = " ".join(str(original if original is not None else exc).split())
    if url.password:
        detail = detail.replace(str(url.password), "***")
    where = describe_url(url)
    if is_unavailable(exc):
        return StoreUnavailableError(f"{what}: database {where} unavailable: {detail}")
    if isinstance(exc, sa_exc.StatementError) and isinstance(original, TypeError | ValueError):
        # Raised before the database saw anything, e.g. a value JSON cannot encode.
        return StoreError(f"{what}: cannot store the value: {detail}")
    return StoreError(f"{what}: database {where} failed: {detail}")


_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})
"""SQLSTATE classes of a database that cannot serve now: connection exception, insufficient
resources, operator intervention (shutdown, restart), system error."""
_UNAVAILABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
"""Serialisation failure, deadlock, lock not available."""
_MYSQL_UNAVAILABLE = frozenset({1040, 1053, 1077, 1205, 1213, 1927, 4031})
"""Too many connections, server shutdown, lock wait timeout, deadlock, connection killed,
disconnected for inactivity; the client's own errors (2000 and up: cannot connect, server gone
away, lost connection) are unavailable too."""
_SQLITE_UNAVAILABLE = frozenset({5, 6, 10, 14})
"""SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_CANTOPEN (primary result codes)."""


def is_unavailable(exc: sa_exc.SQLAlchemyError) -> bool:
    """True when ``exc`` means the database cannot serve now (retrying may help), False for a
    real error in what was asked (a missing table, a refused login, bad SQL).

    Disconnects (SQLAlchemy's ``connection_invalidated``), pool timeouts and interface errors
    are unavailable; an operational error is decided by its SQLSTATE, MySQL error number or
    SQLite result code, and one without any (a failure to connect, before the server said
    anything) is unavailable.
    """
    if isinstance(exc, sa_exc.InterfaceError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, sa_exc.OperationalError):
        return False
    original = getattr(exc, "orig", None)
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in _SQLITE_UNAVAILABLE
    sqlstate, errno = _error_code(exc)
    if errno is not None:
        return errno in _MYSQL_UNAVAILABLE or errno >= 2000
    if sqlstate:
        return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES
    return True


def _error_code(exc: BaseException | None) -> tuple[str | None, int | None]:
    original = getattr(exc, "orig", None)
    sqlstate = getattr(original, "sqlstate", None)
    args = getattr(original, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    return sqlstate, errno


def _is_conflict(exc: BaseException | None) -> bool:
    """Deadlock or serialisation failure: the database rolled back; safe to re-run."""
    sqlstate, errno = _error_code(exc)
    return sqlstate in ("40001", "40P01") or errno == 1213


def _integrity_kind(exc: sa_exc.IntegrityError) -> str:
    """``unique``, ``foreign_key`` or ``other`` (e.g. NOT NULL) constraint violation."""
    sqlstate, errno = _error_code(exc)
    text = str(exc.orig).upper()
    if sqlstate == "23505" or errno == 1062 or "UNIQUE CONSTRAINT FAILED" in text:
        return "unique"
    if sqlstate == "23503" or errno in (1216, 1452) or "FOREIGN KEY CONSTRAINT FAILED" in text:
        return "foreign_key"
    return "other"
