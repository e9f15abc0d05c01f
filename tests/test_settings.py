from __future__ import annotations

import json
from pathlib import Path

import pytest

from review_reminders.errors import ConfigurationError
from review_reminders.settings import (
    APP_SETTING_NAMES,
    DEFAULT_GRAPH_ENDPOINT,
    is_guid,
    load_settings,
)

GUID_A = "11111111-2222-3333-4444-555555555555"
GUID_B = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def test_defaults_without_settings() -> None:
    settings = load_settings({})
    assert settings.graph_endpoint == DEFAULT_GRAPH_ENDPOINT
    assert settings.graph_scope == "https://graph.microsoft.com/.default"
    assert settings.managed_identity_client_id is None
    assert settings.definition_ids == ()
    assert settings.max_concurrency == 4


def test_national_cloud_endpoint_sets_scope() -> None:
    settings = load_settings({"GRAPH_ENDPOINT": "https://graph.microsoft.us/"})
    assert settings.graph_endpoint == "https://graph.microsoft.us"
    assert settings.graph_scope == "https://graph.microsoft.us/.default"


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8080", "http://localhost:9000", "http://[::1]:7000", "http://127.9.9.9"],
)
def test_http_allowed_for_loopback(endpoint: str) -> None:
    assert load_settings({"GRAPH_ENDPOINT": endpoint}).graph_endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://graph.microsoft.com",
        "http://10.0.0.1",
        "ftp://graph.microsoft.com",
        "graph.microsoft.com",
        "https://graph.microsoft.com/v1.0",
        "https://graph.microsoft.com?x=1",
        "https://user:pass@graph.microsoft.com",
        "https://",
    ],
)
def test_invalid_graph_endpoint_rejected(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match="GRAPH_ENDPOINT"):
        load_settings({"GRAPH_ENDPOINT": endpoint})


def test_definition_ids_parsed_and_deduplicated() -> None:
    settings = load_settings({"REMINDER_DEFINITION_IDS": f" {GUID_A}, {GUID_B.upper()},,{GUID_A}"})
    assert settings.definition_ids == (GUID_A, GUID_B)


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                "GRAPH_ENDPOINT": "http://example.com",
                "AZURE_CLIENT_ID": "not-a-guid",
                "REMINDER_DEFINITION_IDS": f"{GUID_A},nope",
                "GRAPH_MAX_CONCURRENCY": "0",
                "GRAPH_TIMEOUT_SECONDS": "soon",
                "GRAPH_RETRY_BUDGET_SECONDS": "1000",
            }
        )
    message = str(caught.value)
    assert len(caught.value.problems) == 6
    for name in (
        "GRAPH_ENDPOINT",
        "AZURE_CLIENT_ID",
        "REMINDER_DEFINITION_IDS",
        "GRAPH_MAX_CONCURRENCY",
        "GRAPH_TIMEOUT_SECONDS",
        "GRAPH_RETRY_BUDGET_SECONDS",
    ):
        assert name in message


@pytest.mark.parametrize("value", ["4.0", "-1", "\u0664", "1e1", "nan", "inf", " 33"])
def test_concurrency_must_be_ascii_whole_number_in_range(value: str) -> None:
    with pytest.raises(ConfigurationError, match="GRAPH_MAX_CONCURRENCY"):
        load_settings({"GRAPH_MAX_CONCURRENCY": value})


def test_fractional_seconds_accepted() -> None:
    settings = load_settings({"GRAPH_TIMEOUT_SECONDS": "2.5", "GRAPH_RETRY_BUDGET_SECONDS": "0"})
    assert settings.timeout_s == 2.5
    assert settings.retry_budget_s == 0


def test_client_id_lowercased() -> None:
    settings = load_settings({"AZURE_CLIENT_ID": GUID_B.upper()})
    assert settings.managed_identity_client_id == GUID_B


@pytest.mark.parametrize(
    "value",
    [
        GUID_A + "\n",
        GUID_A + "/../x",
        "{" + GUID_A + "}",
        GUID_A.replace("1", "\u0661"),  # ARABIC-INDIC DIGIT ONE
        GUID_A.replace("-", ""),
        GUID_A[:-1] + "g",
        "",
    ],
)
def test_is_guid_rejects_lookalikes(value: str) -> None:
    assert not is_guid(value)


def test_app_setting_names_unique() -> None:
    assert len(set(APP_SETTING_NAMES)) == len(APP_SETTING_NAMES)


def test_sample_settings_list_every_setting() -> None:
    path = Path(__file__).resolve().parent.parent / "local.settings.sample.json"
    values = json.loads(path.read_text(encoding="utf-8"))["Values"]
    for name in APP_SETTING_NAMES:
        assert name in values, name


def test_sample_settings_load() -> None:
    path = Path(__file__).resolve().parent.parent / "local.settings.sample.json"
    values = json.loads(path.read_text(encoding="utf-8"))["Values"]
    settings = load_settings(values)
    assert settings.pending_check is True
    assert settings.dry_run is False
    assert settings.ending_within_days is None


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("false", False), ("1", True)])
def test_dry_run_parsed(raw: str, expected: bool) -> None:
    assert load_settings({"REMINDER_DRY_RUN": raw}).dry_run is expected


def test_ending_within_days_parsed() -> None:
    assert load_settings({"REMINDER_ENDING_WITHIN_DAYS": "7"}).ending_within_days == 7


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("REMINDER_ENDING_WITHIN_DAYS", "366"),
        ("REMINDER_ENDING_WITHIN_DAYS", "-1"),
        ("REMINDER_DRY_RUN", "maybe"),
        ("REMINDER_PENDING_CHECK", "off"),
    ],
)
def test_reminder_options_rejected(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings({name: raw})
