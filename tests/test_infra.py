"""Offline checks of the Bicep under infra/, because the Bicep CLI cannot run here.

pycep-parser reads every file, the tests assert the security properties on the parsed tree, and
checkov runs its Azure checks over a copy of infra/ that its older parser can read.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from review_reminders import settings as app_settings
from tests.infra_support import (
    CHECKOV_INSTALL_COMMAND,
    INFRA_DIR,
    REPO_ROOT,
    CheckovReport,
    Scope,
    bicep_files,
    copy_for_checkov,
    decorator_argument,
    description,
    find_checkov,
    main_tree,
    module_call,
    module_condition,
    module_tree,
    object_entries,
    only_resource,
    parse_bicep,
    resource_body,
    resources_of_type,
    rewrite_for_checkov,
    run_checkov,
    site_app_settings,
    strings_in,
    unquote,
)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_EXTENSION = "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

# App settings and site properties that Flex Consumption rejects or ignores, because the runtime
# and the package location live in functionAppConfig and the plan has no content share.
FLEX_REJECTED_NAMES = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "linuxFxVersion",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
)

# Resource types that carry tags. Child resources, role assignments and Graph objects have none.
TAGGED_TYPES = (
    "Microsoft.ManagedIdentity/userAssignedIdentities",
    "Microsoft.Storage/storageAccounts",
    "Microsoft.OperationalInsights/workspaces",
    "Microsoft.Insights/components",
    "Microsoft.Web/serverfarms",
    "Microsoft.Web/sites",
)

CHECKOV_SKIP = re.compile(r"checkov:skip=(?P<ids>[^:\s]*)(?::(?P<reason>.*))?")


def _relative(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def _declarations(kind: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in bicep_files():
        try:
            tree = parse_bicep(path)
        except ValueError:
            continue  # test_bicep_file_parses reports the file
        for name, declaration in (tree.get(kind) or {}).items():
            found.append((f"{_relative(path)}::{name}", declaration))
    return found


def _values(entries: list[Any]) -> list[Any]:
    return [entry.value for entry in entries]


def _member(target: Any, name: str) -> dict[str, Any]:
    """Build pycep's tree for the Bicep expression `target.name`."""
    return {
        "operator": {
            "type": "property_accessor",
            "operands": {"operand_1": target, "operand_2": name},
        }
    }


def _conditional_branches(expression: dict[str, Any]) -> tuple[Any, Any]:
    operands = expression["operator"]["operands"]
    return operands["true_value"], operands["false_value"]


# Parsing


@pytest.mark.parametrize("path", bicep_files(), ids=_relative)
def test_bicep_file_parses(path: Path) -> None:
    assert isinstance(parse_bicep(path), dict)


@pytest.mark.parametrize(
    ("name", "declaration"),
    _declarations("parameters"),
    ids=[n for n, _ in _declarations("parameters")],
)
def test_param_has_description(name: str, declaration: dict[str, Any]) -> None:
    text = description(declaration) or ""
    assert text.startswith(("Required. ", "Optional. ")), f"{name} has description {text!r}"


@pytest.mark.parametrize(
    ("name", "declaration"), _declarations("outputs"), ids=[n for n, _ in _declarations("outputs")]
)
def test_output_has_description(name: str, declaration: dict[str, Any]) -> None:
    text = description(declaration) or ""
    assert text.startswith(("Required. ", "Optional. ")), f"{name} has description {text!r}"


@pytest.mark.parametrize(
    ("name", "declaration"),
    _declarations("parameters"),
    ids=[n for n, _ in _declarations("parameters")],
)
def test_param_default_not_empty_string(name: str, declaration: dict[str, Any]) -> None:
    # An optional value is a nullable type (string?), never an empty-string sentinel.
    assert declaration.get("default") != "", f"{name} defaults to ''"


def test_api_version_one_per_type() -> None:
    versions: dict[str, set[str]] = {}
    for path in bicep_files():
        for resource in (parse_bicep(path).get("resources") or {}).values():
            versions.setdefault(resource["type"], set()).add(resource["api_version"])
    mixed = {kind: sorted(found) for kind, found in versions.items() if len(found) > 1}
    assert not mixed, f"resource types with more than one API version: {mixed}"


@pytest.mark.parametrize("name", FLEX_REJECTED_NAMES)
def test_flex_rejected_name_absent(name: str) -> None:
    for path in bicep_files():
        assert name not in strings_in(parse_bicep(path)), f"{name} appears in {_relative(path)}"


def test_graph_extension_only_in_grant() -> None:
    with_extension = [_relative(p) for p in bicep_files() if parse_bicep(p).get("extensions")]
    assert with_extension == ["infra/modules/graph-permission.bicep"]


# Storage


def test_storage_rejects_shared_keys() -> None:
    account = only_resource(module_tree("storage"), "Microsoft.Storage/storageAccounts")
    assert account["properties"]["allowSharedKeyAccess"] is False


def test_storage_minimum_tls_12() -> None:
    account = only_resource(module_tree("storage"), "Microsoft.Storage/storageAccounts")
    assert account["properties"]["minimumTlsVersion"] == "TLS1_2"


def test_storage_no_public_blob_access() -> None:
    account = only_resource(module_tree("storage"), "Microsoft.Storage/storageAccounts")
    assert account["properties"]["allowBlobPublicAccess"] is False


def test_storage_https_only() -> None:
    account = only_resource(module_tree("storage"), "Microsoft.Storage/storageAccounts")
    assert account["properties"]["supportsHttpsTrafficOnly"] is True


def test_deployment_container_private() -> None:
    container = only_resource(
        module_tree("storage"), "Microsoft.Storage/storageAccounts/blobServices/containers"
    )
    assert container["properties"]["publicAccess"] == "None"


def test_deployment_container_named_by_param() -> None:
    container = only_resource(
        module_tree("storage"), "Microsoft.Storage/storageAccounts/blobServices/containers"
    )
    assert container["name"] == "deploymentContainerName"


# Plan and function app


def test_plan_is_flex_consumption() -> None:
    plan = only_resource(module_tree("function-app"), "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}


def test_plan_runs_linux() -> None:
    plan = only_resource(module_tree("function-app"), "Microsoft.Web/serverfarms")
    assert plan["properties"]["reserved"] is True


def test_site_kind_linux_function_app() -> None:
    site = only_resource(module_tree("function-app"), "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"


def test_site_https_only() -> None:
    site = only_resource(module_tree("function-app"), "Microsoft.Web/sites")
    assert site["properties"]["httpsOnly"] is True


def test_site_minimum_tls_12() -> None:
    site = only_resource(module_tree("function-app"), "Microsoft.Web/sites")
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"


def test_site_ftps_disabled() -> None:
    site = only_resource(module_tree("function-app"), "Microsoft.Web/sites")
    assert site["properties"]["siteConfig"]["ftpsState"] == "Disabled"


def test_runtime_is_python() -> None:
    site = only_resource(module_tree("function-app"), "Microsoft.Web/sites")
    assert site["properties"]["functionAppConfig"]["runtime"]["name"] == "python"


def test_runtime_version_from_param() -> None:
    site = only_resource(module_tree("function-app"), "Microsoft.Web/sites")
    assert site["properties"]["functionAppConfig"]["runtime"]["version"] == "pythonVersion"


@pytest.mark.parametrize("tree_name", ["main", "function-app"])
def test_python_default_matches_tests(tree_name: str) -> None:
    tree = main_tree() if tree_name == "main" else module_tree(tree_name)
    assert tree["parameters"]["pythonVersion"]["default"] == RUNNING_PYTHON


@pytest.mark.parametrize("setting", ["instanceMemoryMB", "maximumInstanceCount"])
def test_scale_setting_from_param(setting: str) -> None:
    site = only_resource(module_tree("function-app"), "Microsoft.Web/sites")
    assert site["properties"]["functionAppConfig"]["scaleAndConcurrency"][setting] == setting


@pytest.mark.parametrize("setting", ["instanceMemoryMB", "maximumInstanceCount"])
def test_scale_param_passed_through(setting: str) -> None:
    call = module_call(main_tree(), "modules/function-app.bicep")
    assert call["params"][setting] == setting


def test_deployment_storage_is_blob_container() -> None:
    site = only_resource(module_tree("function-app"), "Microsoft.Web/sites")
    storage = site["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer"


def test_deployment_storage_uses_identity() -> None:
    tree = module_tree("function-app")
    site = only_resource(tree, "Microsoft.Web/sites")
    reference = site["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]
    branches = _conditional_branches(tree["variables"][reference]["value"])
    kinds = sorted(branch["type"] for branch in branches)
    assert kinds == ["SystemAssignedIdentity", "UserAssignedIdentity"]


def test_deployment_storage_names_identity() -> None:
    tree = module_tree("function-app")
    site = only_resource(tree, "Microsoft.Web/sites")
    reference = site["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]
    user_assigned, _ = _conditional_branches(tree["variables"][reference]["value"])
    assert "userAssignedIdentity" in strings_in(user_assigned["userAssignedIdentityResourceId"])


def test_site_identity_both_kinds() -> None:
    tree = module_tree("function-app")
    site = only_resource(tree, "Microsoft.Web/sites")
    branches = _conditional_branches(tree["variables"][site["identity"]]["value"])
    kinds = sorted(branch["type"] for branch in branches)
    assert kinds == ["SystemAssigned", "UserAssigned"]


def test_user_assigned_identity_attached() -> None:
    tree = module_tree("function-app")
    site = only_resource(tree, "Microsoft.Web/sites")
    user_assigned, _ = _conditional_branches(tree["variables"][site["identity"]]["value"])
    assert user_assigned["userAssignedIdentities"], "no identity listed in userAssignedIdentities"


def test_identity_defaults_to_user_assigned() -> None:
    assert main_tree()["parameters"]["identityType"]["default"] == "UserAssigned"


# App settings


def test_host_storage_uses_identity() -> None:
    values = _values(site_app_settings()["AzureWebJobsStorage__credential"])
    assert values == ["managedidentity"]


@pytest.mark.parametrize(
    "setting", ["AzureWebJobsStorage__clientId", "AzureWebJobsStorage__blobServiceUri"]
)
def test_host_storage_setting_set(setting: str) -> None:
    assert setting in site_app_settings()


def test_host_storage_no_connection_string() -> None:
    assert "AzureWebJobsStorage" not in site_app_settings()


@pytest.mark.parametrize(
    "setting", ["AzureWebJobsStorage__queueServiceUri", "AzureWebJobsStorage__tableServiceUri"]
)
def test_queue_table_uri_behind_flag(setting: str) -> None:
    tree = module_tree("function-app")
    gated = object_entries(
        _conditional_branches(tree["variables"]["queueAndTableSettings"]["value"])[0],
        Scope.of(tree),
    )
    assert setting in gated


def test_queue_table_flag_condition() -> None:
    tree = module_tree("function-app")
    condition = tree["variables"]["queueAndTableSettings"]["value"]["operator"]["operands"]
    assert condition["condition"] == "useQueuesAndTables"


def test_queue_table_not_a_main_param() -> None:
    assert "useQueuesAndTables" not in main_tree()["parameters"]


def test_queue_table_always_on_in_main() -> None:
    # The ledger and job state need tables and long jobs need a queue, so main turns both on.
    for path in ("modules/function-app.bicep", "modules/role-assignments.bicep"):
        call = module_call(main_tree(), path)
        assert call["params"]["useQueuesAndTables"] is True, path


def test_insights_auth_string_set() -> None:
    values = _values(site_app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])
    user_assigned, system_assigned = _conditional_branches(values[0])
    assert (user_assigned, system_assigned) == (
        "ClientId=${userAssignedIdentity!.clientId};Authorization=AAD",
        "Authorization=AAD",
    )


def test_insights_connection_string_set() -> None:
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in site_app_settings()


@pytest.mark.parametrize("setting", app_settings.APP_SETTING_NAMES)
def test_code_setting_set_by_bicep(setting: str) -> None:
    # review_reminders/settings.py lists every setting that the code reads. Each must be deployed.
    assert setting in site_app_settings(), f"{setting} is read by the app but not set in infra/"


@pytest.mark.parametrize("setting", app_settings.APP_SETTING_NAMES)
def test_code_setting_from_described_param(setting: str) -> None:
    for entry in site_app_settings().get(setting, []):
        sources = strings_in(entry.value) & set(entry.scope.parameters)
        assert sources, f"{setting} is not taken from a parameter"
        for source in sources:
            assert description(entry.scope.parameters[source]), f"{source} has no description"


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("graphEndpoint", app_settings.DEFAULT_GRAPH_ENDPOINT),
        ("graphMaxConcurrency", app_settings.DEFAULT_GRAPH_MAX_CONCURRENCY),
        ("graphTimeoutSeconds", app_settings.DEFAULT_GRAPH_TIMEOUT_S),
        ("graphRetryBudgetSeconds", app_settings.DEFAULT_GRAPH_RETRY_BUDGET_S),
    ],
)
def test_setting_default_matches_code(param: str, expected: object) -> None:
    assert main_tree()["parameters"][param]["default"] == expected


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("graphMaxConcurrency", app_settings.MAX_GRAPH_CONCURRENCY),
        ("graphTimeoutSeconds", app_settings.MAX_GRAPH_TIMEOUT_S),
        ("graphRetryBudgetSeconds", app_settings.MAX_GRAPH_RETRY_BUDGET_S),
    ],
)
def test_setting_maximum_matches_code(param: str, expected: float) -> None:
    maximum = decorator_argument(main_tree()["parameters"][param], "max_value")
    assert int(maximum) == expected


# Monitoring


def test_insights_local_auth_disabled() -> None:
    component = only_resource(module_tree("monitoring"), "Microsoft.Insights/components")
    assert component["properties"]["DisableLocalAuth"] is True


def test_insights_workspace_based() -> None:
    component = only_resource(module_tree("monitoring"), "Microsoft.Insights/components")
    assert "logAnalytics" in strings_in(component["properties"]["WorkspaceResourceId"])


def test_workspace_local_auth_disabled() -> None:
    workspace = only_resource(module_tree("monitoring"), "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True


# Role assignments


def _role_assignments() -> dict[str, dict[str, Any]]:
    return resources_of_type(
        module_tree("role-assignments"), "Microsoft.Authorization/roleAssignments"
    )


ROLE_ASSIGNMENT_SYMBOLS = ("storageRoleAssignments", "monitoringRoleAssignments")


def test_role_assignments_exist() -> None:
    assert sorted(_role_assignments()) == sorted(ROLE_ASSIGNMENT_SYMBOLS)


@pytest.mark.parametrize("symbol", ROLE_ASSIGNMENT_SYMBOLS)
def test_role_assignment_loops_role_map(symbol: str) -> None:
    loop = _role_assignments()[symbol]["config"]["loop_type"]["detail"]["array_name"]
    assert loop["function"]["type"] == "items", f"{symbol} does not loop over a role map"


@pytest.mark.parametrize("symbol", ROLE_ASSIGNMENT_SYMBOLS)
def test_role_assignment_name_is_guid(symbol: str) -> None:
    resource = _role_assignments()[symbol]
    body = resource_body(resource)
    item = resource["config"]["loop_type"]["detail"]["item_name"]
    arguments = list(body["name"]["function"]["parameters"].values())
    assert body["name"]["function"]["type"] == "guid"
    assert arguments == [_member(body["scope"], "id"), "principalId", _member(item, "value")]


@pytest.mark.parametrize("symbol", ROLE_ASSIGNMENT_SYMBOLS)
def test_role_assignment_targets_service_principal(symbol: str) -> None:
    assert (
        resource_body(_role_assignments()[symbol])["properties"]["principalType"]
        == "ServicePrincipal"
    )


def _role_map(variable: str) -> dict[str, str]:
    tree = module_tree("role-assignments")
    entries = object_entries(variable, Scope.of(tree))
    return {name: _values(found)[0] for name, found in entries.items()}


@pytest.mark.parametrize(
    ("variable", "role"),
    [
        ("storageRoles", "Storage Blob Data Owner"),
        ("storageRoles", "Storage Queue Data Contributor"),
        ("storageRoles", "Storage Table Data Contributor"),
        ("monitoringRoles", "Monitoring Metrics Publisher"),
    ],
)
def test_role_map_has_role(variable: str, role: str) -> None:
    assert _role_map(variable).get(role) == ROLE_IDS[role]


def test_role_maps_grant_nothing_else() -> None:
    granted = set(_role_map("storageRoles")) | set(_role_map("monitoringRoles"))
    assert granted == set(ROLE_IDS)


def test_queue_table_roles_behind_flag() -> None:
    tree = module_tree("role-assignments")
    operands = tree["variables"]["queueAndTableRoles"]["value"]["operator"]["operands"]
    assert operands["condition"] == "useQueuesAndTables"


@pytest.mark.parametrize(
    ("symbol", "scope"),
    [
        ("storageRoleAssignments", "storageAccount"),
        ("monitoringRoleAssignments", "applicationInsights"),
    ],
)
def test_role_assignment_scope(symbol: str, scope: str) -> None:
    assert resource_body(_role_assignments()[symbol])["scope"] == scope


# Graph permission grant


def test_graph_extension_declared() -> None:
    assert "microsoftGraphV1" in module_tree("graph-permission")["extensions"]


def test_graph_service_principal_by_app_id() -> None:
    tree = module_tree("graph-permission")
    (principal,) = [
        r for r in tree["resources"].values() if r["type"] == "Microsoft.Graph/servicePrincipals"
    ]
    assert principal["existing"] is True
    assert tree["variables"][principal["config"]["appId"]]["value"] == GRAPH_APP_ID


def test_graph_role_looked_up_by_value() -> None:
    tree = module_tree("graph-permission")
    grant = only_resource(tree, "Microsoft.Graph/appRoleAssignedTo")
    (lookup_name,) = strings_in(grant["appRoleId"]) & set(tree["variables"])
    lookup = tree["variables"][lookup_name]["value"]["function"]
    assert lookup["type"] == "filter"
    assert lookup["parameters"]["input_array"] == _member("graphServicePrincipal", "appRoles")
    condition = strings_in(lookup["parameters"]["expression"])
    assert {"value", "appRoleValue", "allowedMemberTypes", "Application"} <= condition


def test_graph_role_is_access_review_readwrite() -> None:
    assert module_tree("graph-permission")["variables"]["appRoleValue"]["value"] == (
        "AccessReview.ReadWrite.All"
    )


def test_graph_role_id_not_hard_coded() -> None:
    text = (INFRA_DIR / "modules" / "graph-permission.bicep").read_text()
    guids = set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text))
    assert guids == {GRAPH_APP_ID}


def test_graph_grant_to_app_identity() -> None:
    grant = only_resource(module_tree("graph-permission"), "Microsoft.Graph/appRoleAssignedTo")
    assert grant["principalId"] == "principalId"


def test_graph_grant_skippable() -> None:
    assert module_condition(main_tree(), "modules/graph-permission.bicep") == "grantGraphPermission"


def test_graph_grant_on_by_default() -> None:
    assert main_tree()["parameters"]["grantGraphPermission"]["default"] is True


def test_bicepconfig_registers_graph_extension() -> None:
    config = json.loads((REPO_ROOT / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"] == GRAPH_EXTENSION


# Entra ID authentication


def _auth_variables() -> dict[str, Any]:
    tree = module_tree("app-authentication")
    return {name: var["value"] for name, var in tree["variables"].items()}


def test_auth_off_by_default() -> None:
    assert main_tree()["parameters"]["enableEntraAuthentication"]["default"] is False


def test_auth_switch_selects_settings() -> None:
    settings = only_resource(module_tree("app-authentication"), "Microsoft.Web/sites/config")
    operands = settings["properties"]["operator"]["operands"]
    assert (operands["condition"], operands["true_value"], operands["false_value"]) == (
        "enabled",
        "enabledSettings",
        "disabledSettings",
    )


def test_auth_disabled_turns_platform_off() -> None:
    assert _auth_variables()["disabledSettings"] == {"platform": {"enabled": False}}


def test_auth_enabled_requires_token() -> None:
    validation = _auth_variables()["enabledSettings"]["globalValidation"]
    assert validation["requireAuthentication"] is True


def test_auth_unauthenticated_gets_401() -> None:
    validation = _auth_variables()["enabledSettings"]["globalValidation"]
    assert validation["unauthenticatedClientAction"] == "Return401"


def test_auth_admits_listed_callers() -> None:
    provider = _auth_variables()["enabledSettings"]["identityProviders"]["azureActiveDirectory"]
    policy = provider["validation"]["defaultAuthorizationPolicy"]
    assert policy["allowedApplications"] == "allowedClientApplicationIds"
    assert "allowedPrincipalIds" in strings_in(
        _auth_variables()[policy["allowedPrincipals"]["identities"]]
    )


def test_auth_empty_lists_admit_nobody() -> None:
    variables = _auth_variables()
    admitted = variables["admittedPrincipalIds"]["operator"]["operands"]
    assert admitted["condition"] == "noCallersListed"
    assert admitted["true_value"] == "noCallerPrincipalIds"
    assert variables["noCallerPrincipalIds"] == ["00000000-0000-0000-0000-000000000000"]


def test_auth_settings_resource_name() -> None:
    settings = only_resource(module_tree("app-authentication"), "Microsoft.Web/sites/config")
    assert settings["name"] == "authsettingsV2"


# Names, tags and outputs


def test_resource_token_uses_unique_string() -> None:
    token = main_tree()["variables"]["resourceToken"]["value"]
    assert "unique_string" in strings_in(token)


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("modules/identity.bicep", "name"),
        ("modules/storage.bicep", "name"),
        ("modules/monitoring.bicep", "logAnalyticsName"),
        ("modules/monitoring.bicep", "applicationInsightsName"),
        ("modules/function-app.bicep", "name"),
        ("modules/function-app.bicep", "planName"),
    ],
)
def test_resource_name_from_token(path: str, param: str) -> None:
    name = module_call(main_tree(), path)["params"][param]
    assert re.fullmatch(r"[a-z]+-?\$\{resourceToken\}", name), f"{path} {param} is {name!r}"


def test_modules_share_tags() -> None:
    for module in main_tree()["modules"].values():
        params = resource_body(module)["params"]
        assert params.get("tags", "resourceTags") == "resourceTags", module["detail"]["path"]


@pytest.mark.parametrize("resource_type", TAGGED_TYPES)
def test_resource_tagged_from_param(resource_type: str) -> None:
    for path in bicep_files():
        for name, resource in resources_of_type(parse_bicep(path), resource_type).items():
            tags = resource_body(resource).get("tags")
            assert tags is not None, f"{name} in {_relative(path)} has no tags"
            assert "tags" in strings_in(tags), f"{name} in {_relative(path)} ignores the tags param"


@pytest.mark.parametrize(
    "output",
    [
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_APP_URL",
        "AZURE_FUNCTION_APP_PRINCIPAL_ID",
        "AZURE_FUNCTION_APP_CLIENT_ID",
    ],
)
def test_main_output_present(output: str) -> None:
    assert output in main_tree()["outputs"]


def test_main_outputs_upper_snake() -> None:
    names = list(main_tree()["outputs"])
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in names), names


def test_azure_yaml_service_matches_tag() -> None:
    text = (REPO_ROOT / "azure.yaml").read_text()
    service = module_call(main_tree(), "modules/function-app.bicep")["params"]["azdServiceName"]
    assert re.search(
        rf"^  {re.escape(service)}:\n    project: \.\n    language: python\n    host: function$",
        text,
        re.M,
    )


def test_parameters_file_names_exist() -> None:
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert set(parameters) <= set(main_tree()["parameters"])


# checkov


def test_rewrite_drops_extension_line() -> None:
    assert (
        rewrite_for_checkov("extension microsoftGraphV1\nparam a string\n") == "\nparam a string\n"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("param a string?\n", "param a string\n"),
        ("param a string[] = []\n", "param a array = []\n"),
        ("output A string? = null\n", "output A string = null\n"),
        ("param a info?\n", "param a info\n"),
        ("var a = b ? 'x' : 'y'\n", "var a = b ? 'x' : 'y'\n"),
    ],
)
def test_rewrite_plain_declaration_types(source: str, expected: str) -> None:
    assert rewrite_for_checkov(source) == expected


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> CheckovReport:
    checkov = find_checkov()
    if checkov is None:
        pytest.fail(
            f"checkov is not installed. From the repository root run: {CHECKOV_INSTALL_COMMAND}"
        )
    return run_checkov(checkov, copy_for_checkov(tmp_path_factory.mktemp("checkov")))


def test_checkov_parses_every_file(checkov_report: CheckovReport) -> None:
    assert checkov_report.parsing_errors == []
    assert checkov_report.summary.get("parsing_errors") == 0


def test_checkov_scans_resources(checkov_report: CheckovReport) -> None:
    assert checkov_report.summary.get("resource_count", 0) > 0


def test_checkov_finds_no_failures(checkov_report: CheckovReport) -> None:
    failures = [
        f"{f['check_id']} {f['resource']} ({f['file_path']})" for f in checkov_report.failed
    ]
    assert failures == []


def test_checkov_skips_have_reasons(checkov_report: CheckovReport) -> None:
    for skipped in checkov_report.skipped:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason.strip()) > 20, (
            f"{skipped['check_id']} on {skipped['resource']}: {reason!r}"
        )


@pytest.mark.parametrize("path", bicep_files(), ids=_relative)
def test_skip_comment_names_one_check(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = CHECKOV_SKIP.search(line)
        if match:
            assert re.fullmatch(r"CKV2?_AZURE_\d+", match["ids"]), f"line {number}: {line.strip()}"
            assert (match["reason"] or "").strip(), f"line {number} has no reason"


def test_unquote_strips_single_quotes() -> None:
    assert unquote("'azd-service-name'") == "azd-service-name"
