"""Helpers for the offline checks of the Bicep in infra/: parsing, tree walks and checkov.

pycep-parser turns a Bicep file into nested dicts. A reference to a parameter, variable or
resource is a plain string with the symbol's name, a function call is {"function": {...}} and an
operator is {"operator": {...}}. Any other dict is an object literal. A string literal also
stays a plain string, so a literal and a symbol with the same text look alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO_ROOT = Path(__file__).resolve().parent.parent
INFRA_DIR = REPO_ROOT / "infra"
MODULES_DIR = INFRA_DIR / "modules"

CHECKOV_INSTALL_COMMAND = (
    "python3.11 -m venv .venv-infra && .venv-infra/bin/pip install -r requirements-infra.txt"
)
CHECKOV_TIMEOUT_S = 600

_EXPRESSION_KINDS = ("function", "operator")
# Accessors read one member of a value, so the keys of the value itself are not produced.
_ACCESSOR_OPERATORS = ("property_accessor", "index_accessor")

_EXTENSION_LINE = re.compile(r"^\s*extension\s")
# A param or output declaration whose type is nullable (string?) or a typed array (string[]).
_DECLARATION_TYPE = re.compile(
    r"^(?P<head>\s*(?:param|output)\s+\w+\s+)(?P<type>\w+)(?P<array>\[\])?\??"
)


def bicep_files() -> list[Path]:
    """List every Bicep file under infra/, in a stable order."""
    return sorted(INFRA_DIR.rglob("*.bicep"))


@cache
def parse_bicep(path: Path) -> dict[str, Any]:
    """Parse one Bicep file with pycep-parser, raising ValueError that names the file."""
    try:
        return BicepParser().parse(file_path=path)
    except Exception as error:  # lark raises several unrelated exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ValueError(f"pycep-parser cannot read {path}: {first_line}") from error


def module_tree(name: str) -> dict[str, Any]:
    """Parse infra/modules/NAME.bicep."""
    return parse_bicep(MODULES_DIR / f"{name}.bicep")


def main_tree() -> dict[str, Any]:
    """Parse infra/main.bicep."""
    return parse_bicep(INFRA_DIR / "main.bicep")


def unquote(key: str) -> str:
    """Strip the quotes that pycep keeps on quoted object keys such as 'azd-service-name'."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def description(declaration: Mapping[str, Any]) -> str | None:
    """Return the @description text of a parsed param or output, or None without one."""
    for decorator in declaration.get("decorators") or []:
        if decorator.get("type") == "description":
            return str(decorator.get("argument"))
    return None


def decorator_argument(declaration: Mapping[str, Any], kind: str) -> Any:
    """Return the argument of a decorator by pycep's name for it (max_value, allowed), or None."""
    for decorator in declaration.get("decorators") or []:
        if decorator.get("type") == kind:
            return decorator.get("argument")
    return None


def resource_body(resource: Mapping[str, Any]) -> dict[str, Any]:
    """Return a resource's body, unwrapping the condition or loop that pycep puts around it."""
    body: dict[str, Any] = resource["config"]
    while "config" in body and ("condition" in body or "loop_type" in body):
        body = body["config"]
    return body


def resources_of_type(tree: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Return the declared (not existing) resources of a type, by symbolic name."""
    return {
        name: resource
        for name, resource in (tree.get("resources") or {}).items()
        if resource["type"] == resource_type and not resource.get("existing")
    }


def only_resource(tree: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    """Return the body of the one declared resource of a type, failing if there are more."""
    matches = list(resources_of_type(tree, resource_type).values())
    if len(matches) != 1:
        raise LookupError(f"expected one {resource_type} resource, found {len(matches)}")
    return resource_body(matches[0])


def module_call(tree: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Return the body of the module call in `tree` that deploys the file at `path`."""
    for module in (tree.get("modules") or {}).values():
        if module["detail"]["path"] == path:
            return resource_body(module)
    raise LookupError(f"no module call deploys {path}")


def module_condition(tree: Mapping[str, Any], path: str) -> Any:
    """Return the `if` condition of the module call that deploys `path`, or None without one."""
    for module in (tree.get("modules") or {}).values():
        if module["detail"]["path"] == path:
            return module["config"].get("condition")
    raise LookupError(f"no module call deploys {path}")


def walk(node: Any) -> Iterator[Any]:
    """Yield a parsed node and everything nested in it, dict keys included."""
    yield node
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def strings_in(node: Any) -> set[str]:
    """Return every string in a parsed node, including literals, symbol names and object keys."""
    return {item for item in walk(node) if isinstance(item, str)}


def is_expression(node: Any) -> bool:
    """Tell whether a parsed dict is a function call or an operator, not an object literal."""
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in _EXPRESSION_KINDS


@dataclass(frozen=True)
class Scope:
    """The symbols that a Bicep expression can refer to, for following references between files.

    `arguments` maps a parameter of this file to the expression that the calling file passes
    for it, together with the caller's scope.
    """

    variables: Mapping[str, Any]
    parameters: Mapping[str, Any]
    arguments: Mapping[str, tuple[Any, Scope]] = field(default_factory=dict)

    @classmethod
    def of(cls, tree: Mapping[str, Any]) -> Scope:
        """Build the scope of a parsed file that no other file calls."""
        variables = {name: var["value"] for name, var in (tree.get("variables") or {}).items()}
        return cls(variables=variables, parameters=tree.get("parameters") or {})

    def called_by(self, caller: Scope, arguments: Mapping[str, Any]) -> Scope:
        """Return this scope with its parameters bound to the arguments of a module call."""
        bound = {name: (expression, caller) for name, expression in arguments.items()}
        return Scope(variables=self.variables, parameters=self.parameters, arguments=bound)


@dataclass(frozen=True)
class ObjectEntry:
    """One key of an object literal, with its value and the scope the value is written in."""

    value: Any
    scope: Scope


def object_entries(expression: Any, scope: Scope) -> dict[str, list[ObjectEntry]]:
    """Collect the keys of every object literal that an expression can evaluate to.

    Variable references and module arguments are followed, and every branch of a conditional
    and every argument of union() counts, so a key appears if any deployment can set it.
    """
    entries: dict[str, list[ObjectEntry]] = {}
    _collect_entries(expression, scope, entries, visited=set())
    return entries


def _collect_entries(
    expression: Any,
    scope: Scope,
    entries: dict[str, list[ObjectEntry]],
    visited: set[tuple[int, str]],
) -> None:
    if isinstance(expression, str):
        marker = (id(scope), expression)
        if marker in visited:
            return
        visited.add(marker)
        if expression in scope.variables:
            _collect_entries(scope.variables[expression], scope, entries, visited)
        elif expression in scope.arguments:
            argument, caller = scope.arguments[expression]
            _collect_entries(argument, caller, entries, visited)
        return
    if is_expression(expression):
        kind, detail = next(iter(expression.items()))
        if kind == "operator" and detail["type"] in _ACCESSOR_OPERATORS:
            return
        operands = detail.get("parameters") or detail.get("operands") or {}
        for operand in operands.values():
            _collect_entries(operand, scope, entries, visited)
        return
    if isinstance(expression, dict):
        for key, value in expression.items():
            entries.setdefault(unquote(key), []).append(ObjectEntry(value, scope))


def site_app_settings() -> dict[str, list[ObjectEntry]]:
    """Collect every app setting that the function app module can set, with its value.

    The site's appSettings list is a loop over items() of an object, and part of that object
    is the appSettings argument that main.bicep passes to the module.
    """
    main_scope = Scope.of(main_tree())
    call = module_call(main_tree(), "modules/function-app.bicep")
    app_tree = module_tree("function-app")
    app_scope = Scope.of(app_tree).called_by(main_scope, call["params"])

    site = only_resource(app_tree, "Microsoft.Web/sites")
    settings_loop = site["properties"]["siteConfig"]["appSettings"]
    source = settings_loop["loop_type"]["detail"]["array_name"]
    if source.get("function", {}).get("type") != "items":
        raise LookupError("siteConfig.appSettings is not a loop over items() of an object")
    return object_entries(source["function"]["parameters"]["arg_1"], app_scope)


def rewrite_for_checkov(text: str) -> str:
    """Rewrite Bicep that checkov's parser cannot read into an equivalent that it can.

    checkov pins pycep-parser 0.5.1, which predates `extension` statements, nullable types
    (string?) and typed arrays (string[]). The rewrite drops extension lines and turns those
    declaration types into plain ones. It keeps every line in place, so checkov's line numbers
    and skip comments still match the source.
    """
    lines = []
    for line in text.splitlines(keepends=True):
        ending = line[len(line.rstrip("\r\n")) :]
        if _EXTENSION_LINE.match(line):
            lines.append(ending)
            continue
        match = _DECLARATION_TYPE.match(line)
        if match:
            plain_type = "array" if match["array"] else match["type"]
            line = match["head"] + plain_type + line[match.end() :]
        lines.append(line)
    return "".join(lines)


def copy_for_checkov(target: Path) -> Path:
    """Copy infra/ into `target`, rewrite every Bicep file for checkov, and return the copy."""
    copy = target / "infra"
    shutil.copytree(INFRA_DIR, copy)
    for path in copy.rglob("*.bicep"):
        path.write_text(rewrite_for_checkov(path.read_text()))
    return copy


def find_checkov() -> Path | None:
    """Locate checkov in $CHECKOV, then in .venv-infra/bin, then on the PATH."""
    override = os.environ.get("CHECKOV")
    if override:
        return Path(override)
    local = REPO_ROOT / ".venv-infra" / "bin" / "checkov"
    if local.exists():
        return local
    found = shutil.which("checkov")
    return Path(found) if found else None


@dataclass(frozen=True)
class CheckovReport:
    """The parts of checkov's JSON report that the tests assert on."""

    summary: dict[str, Any]
    failed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    passed: list[dict[str, Any]]
    parsing_errors: list[str]


def run_checkov(checkov: Path, directory: Path) -> CheckovReport:
    """Run checkov's Bicep checks over a directory and return its report.

    checkov runs offline. It downloads no policies and skips its update check, and the proxy
    variables send any HTTP request it still makes to a closed port on loopback.
    """
    environment = {
        **os.environ,
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
        "BC_SKIP_MAPPING": "TRUE",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    command = [
        str(checkov),
        "--directory",
        str(directory),
        "--framework",
        "bicep",
        "--skip-download",
        "--output",
        "json",
    ]
    # The command is a fixed executable and fixed arguments, with no text from outside.
    completed = subprocess.run(  # noqa: S603
        command,
        capture_output=True,
        text=True,
        env=environment,
        timeout=CHECKOV_TIMEOUT_S,
        check=False,
    )
    # checkov exits 1 when a check fails and 0 otherwise, so any other code means it crashed.
    if completed.returncode not in (0, 1):
        raise RuntimeError(
            f"checkov exited with {completed.returncode}: {completed.stderr.strip()[-2000:]}"
        )
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError as error:
        raise RuntimeError(f"checkov printed no JSON report: {completed.stdout[:2000]}") from error
    if isinstance(report, list):
        report = next(item for item in report if item.get("check_type") == "bicep")
    results = report.get("results", {})
    return CheckovReport(
        summary=report.get("summary", {}),
        failed=results.get("failed_checks", []),
        skipped=results.get("skipped_checks", []),
        passed=results.get("passed_checks", []),
        parsing_errors=results.get("parsing_errors", []),
    )
