"""Contract-time checks of private training: what a privacy budget means must hold before a vote.

A single application's ``private_training`` section validates on its own (epsilon, delta below
``1/min_rows``, Poisson sampling); what it means depends on the rest of the contract, so these
checks run on the whole spec when a contract is created or set (``core.config.merge.
parse_contract_spec``, which governance's constitution runs). Each refusal names the
application or datasource and the fix. Why each one:

* a join source must be a datasource of the contract declaring a budget, mounted by the
  application: governance charges only budgeted datasets, and the runtime gives the workload
  only what it mounts;
* the join key must be every source's privacy unit: the per-person bound
  (``max_rows_per_key``) the accounting relies on is enforced on that key;
* the run's delta may not exceed any source's: each owner chose its own failure probability;
* every source's upload is pinned (``content_hash``): a budget spent on data nobody voted on
  protects nothing;
* a budgeted datasource may be mounted only by private training applications that join it: a
  second, non-private application on the same rows (a shadow model) would release them with no
  epsilon at all;
* a run charging more than a source's whole budget could never run, so it is refused now;
* one private training application per contract: every workload of a clean room writes to the
  same telemetry stream, so with two, one could send a privacy record in the other's name before
  it (a record is attributed by the contract, not by the process that wrote it).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.config.fragment import Application, DataAsset
from core.errors import InvalidInputError


def check_private_training(
    datasources: Sequence[DataAsset], datasinks: Sequence[DataAsset], applications: Sequence[Application]
) -> None:
    """Refuse a spec whose private training would not be accounted as declared (see the module)."""
    for sink in datasinks:
        if sink.privacy is not None:
            raise InvalidInputError(
                f"datasink '{sink.name}' declares a privacy budget",
                hint="only datasources have one: remove privacy from the datasink",
            )
    private = [app.name for app in applications if app.private_training is not None]
    if len(private) > 1:
        raise InvalidInputError(
            f"applications {', '.join(repr(name) for name in private)} all have private_training; a contract"
            " runs one private training application (their privacy records would share one stream)",
            hint="put each private training run in its own contract",
        )
    budgeted = {asset.name: asset for asset in datasources if asset.privacy is not None}
    for app in applications:
        mounted = {mount.source for mount in app.mounts}
        if app.private_training is None:
            for name in sorted(mounted & set(budgeted)):
                raise InvalidInputError(
                    f"application '{app.name}' mounts budgeted datasource '{name}' without private_training:"
                    " a non-private model on private rows is refused",
                    hint=f"remove the mount or give '{app.name}' a private_training section",
                )
            continue
        _check_application(app, budgeted, mounted)


def _check_application(app: Application, budgeted: dict[str, DataAsset], mounted: set[str]) -> None:
    training = app.private_training
    assert training is not None
    join = training.join
    charge = join.max_rows_per_key * training.epsilon
    for name in join.datasources:
        asset = budgeted.get(name)
        if asset is None or asset.privacy is None:
            raise InvalidInputError(
                f"join source '{name}' of application '{app.name}' is not a budgeted datasource of the contract",
                hint=f"its owner declares it with `cleanroom config add-datasource --name {name} --epsilon-total E"
                " --delta D --privacy-unit COLUMN` and the contract is created again",
            )
        budget = asset.privacy
        if name not in mounted:
            raise InvalidInputError(
                f"application '{app.name}' does not mount its join source '{name}'",
                hint=f"add --mounts src={name},dst=/mnt/remote/{name} to the application",
            )
        if join.key != budget.privacy_unit:
            raise InvalidInputError(
                f"join key '{join.key}' of application '{app.name}' is not the privacy unit"
                f" '{budget.privacy_unit}' of datasource '{name}'",
                hint="join on the person-id column every owner declared as its privacy unit",
            )
        if training.delta > budget.delta:
            raise InvalidInputError(
                f"delta {training.delta:g} of application '{app.name}' is above datasource '{name}''s"
                f" delta {budget.delta:g}",
                hint=f"lower private_training.delta to at most {budget.delta:g}",
            )
        if charge > budget.epsilon_total:
            raise InvalidInputError(
                f"one run of application '{app.name}' charges epsilon {charge:g}"
                f" ({join.max_rows_per_key} rows per person x {training.epsilon:g}) but datasource '{name}'"
                f" has {budget.epsilon_total:g} in all",
                hint="lower private_training.epsilon or max_rows_per_key",
            )
        if asset.content_hash is None:
            raise InvalidInputError(
                f"datasource '{name}' has no pinned upload (content_hash)",
                hint=f"its owner runs `cleanroom datasource upload --name {name} ...` before the contract is created",
            )
    for name in sorted(mounted & set(budgeted) - set(join.datasources)):
        raise InvalidInputError(
            f"application '{app.name}' mounts budgeted datasource '{name}' that its join does not use:"
            " rows outside the join would not be accounted",
            hint=f"add '{name}' to private_training.join.sources or remove the mount",
        )
