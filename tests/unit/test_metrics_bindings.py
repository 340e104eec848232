"""Both Workers write operator metrics to one Analytics Engine dataset per environment, and the config check
says so when one of them lacks it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from scrapeq.cloudflare import configs
from scrapeq.cloudflare.bundle import PROJECT_DIR
from shared.backends import analytics

WORKERS_DIR = Path(__file__).resolve().parents[2] / PROJECT_DIR


@pytest.mark.parametrize(("env", "dataset"), [(None, "scrapeq_metrics"), ("staging", "scrapeq_metrics_staging")])
def test_both_workers_bind_the_environments_dataset(env: str | None, dataset: str) -> None:
    for name in ("wrangler.toml", "wrangler.consumer.toml"):
        assert configs.view(configs.load(WORKERS_DIR / name), env).metrics_dataset == dataset
    assert configs.METRICS_BINDING == analytics.BINDING


def test_a_worker_without_the_dataset_is_reported() -> None:
    producer = configs.load(WORKERS_DIR / "wrangler.toml")
    consumer = copy.deepcopy(configs.load(WORKERS_DIR / "wrangler.consumer.toml"))
    del consumer["env"]["staging"]["analytics_engine_datasets"]
    assert configs.check_pair(producer, consumer, None) == []
    assert configs.check_pair(producer, consumer, "staging") == [
        "the METRICS dataset differs or is missing: 'scrapeq_metrics_staging' / None"
    ]
