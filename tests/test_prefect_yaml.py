"""infra/prefect/prefect.yaml is deployable: Prefect's own model reads it, every entrypoint is a flow that imports,
its parameters fit the flow's signature and types, and every schedule parses. Offline: no server, no deploy."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "infra" / "prefect" / "prefect.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text())


def _flow(entrypoint: str):
    path, name = entrypoint.split(":")
    assert (REPO / path).is_file(), f"entrypoint file {path} does not exist"
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def test_prefects_own_prefect_yaml_model_reads_every_deployment(config):
    models = pytest.importorskip("prefect.cli.deploy._models", reason="the model `prefect deploy` validates with")
    parsed = models.PrefectYamlModel.model_validate(config)
    assert [d.name for d in parsed.deployments] == [d["name"] for d in config["deployments"]]
    assert parsed.pull and all(d.work_pool and d.work_pool.name for d in parsed.deployments)


def test_entrypoints_are_flows_and_parameters_fit_their_signatures(config):
    from prefect import Flow

    assert config["deployments"], "no deployments"
    for deployment in config["deployments"]:
        flow = _flow(deployment["entrypoint"])
        assert isinstance(flow, Flow), deployment["entrypoint"]
        signature = inspect.signature(flow.fn)
        params = deployment.get("parameters", {})
        assert set(params) <= set(signature.parameters), (deployment["name"], set(params) - set(signature.parameters))
        required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
        assert required <= set(params), (deployment["name"], required - set(params))
        flow.validate_parameters(params)  # pydantic, against the annotations, as a deployment run would


def test_schedules_parse_as_prefect_schedules(config):
    from prefect.client.schemas.schedules import CronSchedule

    crons = [s for d in config["deployments"] for s in d.get("schedules", [])]
    assert crons, "the nightly inversion has a schedule"
    for schedule in crons:
        CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone", "UTC"))
    with pytest.raises(ValueError):
        CronSchedule(cron="0 2 * *")  # the check would catch a malformed cron


def test_nightly_inversion_appends_to_an_existing_store_on_a_dask_cluster(config):
    nightly = next(d for d in config["deployments"] if d["entrypoint"].endswith(":invert_dataset"))
    params = nightly["parameters"]
    assert "://" in params["execution"]["cluster"] and params["store"].endswith(".zarr")
    assert not params["execution"].get("force") and not params["config"].get("retry_failed")  # never takes over
    from prefect.exceptions import ParameterTypeError

    from runtime.config import InvertConfig

    InvertConfig(**params["config"]).resolve(params["generator"])  # settings are valid
    with pytest.raises(ParameterTypeError):  # the parameter check above has teeth
        _flow(nightly["entrypoint"]).validate_parameters({**params, "config": {"shard_size": "many"}})


def test_every_flow_of_the_pipeline_has_a_deployment(config):
    entrypoints = {d["entrypoint"] for d in config["deployments"]}
    assert entrypoints >= {"flows/invert_dataset.py:invert_dataset", "flows/fit_boundaries.py:fit_boundaries",
                           "flows/discover_directions.py:discover_directions", "flows/render_edits.py:render_edits",
                           "flows/evaluation_report.py:evaluation_report"}
    report = next(d for d in config["deployments"] if d["entrypoint"].endswith(":evaluation_report"))
    inversion = next(d for d in config["deployments"] if d["entrypoint"].endswith(":invert_dataset"))
    # The report reads what the night's inversion wrote: same store, scheduled after it.
    assert report["parameters"]["store"] == inversion["parameters"]["store"]
    hour = lambda deployment: int(deployment["schedules"][0]["cron"].split()[1])  # noqa: E731
    assert hour(report) > hour(inversion)
