"""Operator command line: list access review instances and remind their reviewers.

Run it as `python -m review_reminders`. It signs in as the operator (through the Azure CLI) or
with a managed identity, and runs the same jobs as the function app, but without the app's
reminder ledger. Only the standard library is imported at the top, so that `--help` is fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from .auth import TOKEN_TIMEOUT_S, CachedTokenSource, describe_identity, first_line, redact
from .errors import (
    REQUIRED_PERMISSION,
    ConfigurationError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    InstanceNotActiveError,
    ReminderError,
    TokenError,
)
from .results import Outcome, ReminderResult, Summary
from .retry import Clock
from .settings import (
    AZURE_CLIENT_ID,
    DEFAULT_GRAPH_ENDPOINT,
    DEFAULT_GRAPH_MAX_CONCURRENCY,
    DEFAULT_GRAPH_TIMEOUT_S,
    GRAPH_ENDPOINT,
    GRAPH_MAX_CONCURRENCY,
    GRAPH_TIMEOUT_SECONDS,
    MAX_ENDING_WITHIN_DAYS,
    MAX_GRAPH_CONCURRENCY,
    MAX_GRAPH_TIMEOUT_S,
    REMINDER_ENDING_WITHIN_DAYS,
    Settings,
    is_guid,
    load_settings,
)

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

    from .graph import Definition, GraphClient, Instance
    from .jobs import ReminderRun, RunOptions

PROG = "python -m review_reminders"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

AUTH_AZURE_CLI = "azure-cli"
AUTH_MANAGED_IDENTITY = "managed-identity"

# Minimum seconds between two progress lines on stderr.
PROGRESS_INTERVAL_S = 3.0
# Maximum width, in characters, of a definition's display name in a table. Longer names are cut.
MAX_NAME_WIDTH = 40

EXIT_CODES_HELP = """\
exit codes:
  0    every target was reminded, skipped or (with --dry-run) would be reminded,
       or the listing is complete
  1    some targets failed, Graph failed, or the named instance is not InProgress
  2    invalid usage or configuration: invalid arguments or ids, an invalid Graph
       endpoint, no token from the credential, Graph denied access, or the named
       definition or instance was not found
  130  interrupted (Ctrl-C); reminders sent before that are not reported
"""

LEDGER_HELP = """\
The function app claims each instance in its Table storage ledger before it sends, so that
a cooldown applies and two runs never remind the same instance at once. This command runs
without the app's storage, so it sends without the ledger. Neither the cooldown nor the
overlap check applies, and the app's later runs do not know what this command sent.
"""

LEDGER_WARNING = (
    "warning: sending without the function app's reminder ledger, so its cooldown and overlap "
    "check do not apply and reviewers may get a second reminder"
)


class UsageError(Exception):
    """Invalid arguments or environment, found after argparse accepted the command line."""


class SignInError(TokenError):
    """The operator's credential issued no token for Graph. Its message names the fix."""

    def __init__(self, source: str, scope: str, cause: str, hint: str) -> None:
        super().__init__(source, scope, cause)
        # TokenError's own message gives advice for the function app, so replace it.
        self.args = (
            f"Could not get a token for {scope} from {source}: {cause.rstrip('.')}. {hint}",
        )


# Sign-in


class CredentialTokenSource(CachedTokenSource):
    """Token cache for one Graph scope, filled by the operator's azure-identity credential.

    The Azure CLI credential starts an `az` process, and the managed identity one makes a
    blocking HTTP request, so both run in a worker thread (see CachedTokenSource).
    """

    def __init__(
        self,
        credential: TokenCredential,
        scope: str,
        *,
        source: str,
        hint: str,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(scope, clock=clock)
        self._credential = credential
        self._source = source
        self._hint = hint

    def __repr__(self) -> str:
        return f"CredentialTokenSource(scope={self._scope!r}, source={self._source!r})"

    def _timeout_error(self) -> Exception:
        cause = f"no token within {TOKEN_TIMEOUT_S:.0f} s"
        return SignInError(self._source, self._scope, cause, self._hint)

    def _fetch(self) -> AccessToken:
        from azure.core.exceptions import AzureError

        try:
            return self._credential.get_token(self._scope)
        except (AzureError, ValueError) as exc:
            # ValueError: a scope the credential rejects, or a response that is not a token.
            cause = redact(first_line(exc))
            raise SignInError(self._source, self._scope, cause, self._hint) from exc

    async def close(self) -> None:
        """Close the credential's HTTP session, if it has one."""
        close = getattr(self._credential, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


def make_token_source(auth: str, settings: Settings) -> CredentialTokenSource:
    """Create the token source for `--auth`: the Azure CLI sign-in or a managed identity."""
    if auth == AUTH_MANAGED_IDENTITY:
        from azure.identity import ManagedIdentityCredential

        client_id = settings.managed_identity_client_id
        return CredentialTokenSource(
            ManagedIdentityCredential(client_id=client_id),
            settings.graph_scope,
            source=f"the {describe_identity(client_id)}",
            hint=(
                "--auth managed-identity works only on an Azure resource that has a managed "
                f"identity. For a user-assigned identity, set {AZURE_CLIENT_ID} to its client id."
            ),
        )

    from azure.identity import AzureCliCredential

    return CredentialTokenSource(
        AzureCliCredential(),
        settings.graph_scope,
        source="the Azure CLI",
        hint=(
            "Run `az login` and try again. For a national cloud, run `az cloud set --name ...` "
            "before `az login`, and pass its Graph endpoint with --graph-endpoint."
        ),
    )


# Command line


def _guid(raw: str) -> str:
    if not is_guid(raw):
        raise argparse.ArgumentTypeError(
            f"must be a GUID such as 00000000-0000-0000-0000-000000000000, got {raw!r}"
        )
    return raw.lower()


def _validate_setting(name: str, raw: str) -> Settings:
    """Validate one flag with the rules of app setting `name`, as argparse expects of a type."""
    if not raw.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    try:
        return load_settings({name: raw})
    except ConfigurationError as exc:
        # The problem starts with the setting's name, and argparse names the flag instead.
        raise argparse.ArgumentTypeError(exc.problems[0].removeprefix(f"{name} ")) from None


def _graph_endpoint(raw: str) -> str:
    return _validate_setting(GRAPH_ENDPOINT, raw).graph_endpoint


def _max_concurrency(raw: str) -> int:
    return _validate_setting(GRAPH_MAX_CONCURRENCY, raw).max_concurrency


def _timeout(raw: str) -> float:
    return _validate_setting(GRAPH_TIMEOUT_SECONDS, raw).timeout_s


def _ending_within_days(raw: str) -> int:
    days = _validate_setting(REMINDER_ENDING_WITHIN_DAYS, raw).ending_within_days
    # A value that passed validation is never empty, so it is always a number.
    return 0 if days is None else days


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--auth",
        choices=(AUTH_AZURE_CLI, AUTH_MANAGED_IDENTITY),
        default=AUTH_AZURE_CLI,
        help=(
            "how to get a token for Graph: your `az login` sign-in (default), or the managed "
            f"identity of the Azure resource this runs on ({AZURE_CLIENT_ID} selects a "
            "user-assigned one)"
        ),
    )
    common.add_argument(
        "--graph-endpoint",
        metavar="URL",
        type=_graph_endpoint,
        help=(
            f"Graph root without /v1.0, for a national cloud (default: {GRAPH_ENDPOINT}, "
            f"or {DEFAULT_GRAPH_ENDPOINT}). Must be https, or http for a loopback host"
        ),
    )
    common.add_argument(
        "--max-concurrency",
        metavar="N",
        type=_max_concurrency,
        default=DEFAULT_GRAPH_MAX_CONCURRENCY,
        help=(
            f"Graph requests in flight at once, 1 to {MAX_GRAPH_CONCURRENCY} (default: %(default)s)"
        ),
    )
    common.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_timeout,
        default=DEFAULT_GRAPH_TIMEOUT_S,
        help=(
            f"read timeout of one Graph request, 1 to {MAX_GRAPH_TIMEOUT_S:g} "
            "(default: %(default)g)"
        ),
    )
    common.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of a table",
    )
    common.add_argument(
        "--progress",
        action="store_true",
        help="print progress lines on stderr even when stderr is not a terminal",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log token requests, Graph requests and retries on stderr",
    )
    return common


def _add_scope(parser: argparse.ArgumentParser, all_help: str) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--definition-id",
        metavar="GUID",
        type=_guid,
        help="the access review definition (schedule) to cover",
    )
    scope.add_argument("--all", dest="all_definitions", action="store_true", help=all_help)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with its `list` and `remind` subcommands."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "List active Microsoft Entra access review instances and remind their reviewers\n"
            "through Microsoft Graph, signed in as you or as a managed identity."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    list_parser = commands.add_parser(
        "list",
        parents=[common],
        help="list the InProgress instances of one definition or of all",
        description=(
            "List the InProgress instances of one definition, or of every definition in the\n"
            "tenant, with whether any reviewer still has to decide."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Kept on the parsed arguments, so that a later check reports errors with this usage.
    list_parser.set_defaults(command_parser=list_parser)
    _add_scope(list_parser, "every definition in the tenant")
    list_parser.add_argument(
        "--no-pending-check",
        dest="pending_check",
        action="store_false",
        help="do not read the decisions of each instance (the PENDING column stays empty)",
    )

    remind_parser = commands.add_parser(
        "remind",
        parents=[common],
        help="remind the reviewers of InProgress instances (or --dry-run)",
        description=(
            "Remind the reviewers who have not decided yet: of one instance, of every\n"
            "InProgress instance of one definition, or of every definition (--all).\n\n"
            + LEDGER_HELP
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    remind_parser.set_defaults(command_parser=remind_parser)
    _add_scope(remind_parser, "every definition in the tenant (never implied: give it explicitly)")
    remind_parser.add_argument(
        "--instance-id",
        metavar="GUID",
        type=_guid,
        help="only this instance of --definition-id, after checking that it is InProgress",
    )
    remind_parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the targets and report each as wouldSend or skipped, but send nothing",
    )
    remind_parser.add_argument(
        "--ending-within-days",
        metavar="N",
        type=_ending_within_days,
        help=(
            "only instances whose end date is at most N days from now, "
            f"0 to {MAX_ENDING_WITHIN_DAYS}"
        ),
    )
    remind_parser.add_argument(
        "--no-pending-check",
        dest="pending_check",
        action="store_false",
        help="remind instances even when no decision is NotReviewed (saves Graph calls)",
    )
    return parser


def load_cli_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Combine the validated flags with GRAPH_ENDPOINT and AZURE_CLIENT_ID from `environ`.

    Raises UsageError naming each invalid environment variable.
    """
    values = {
        GRAPH_MAX_CONCURRENCY: str(args.max_concurrency),
        GRAPH_TIMEOUT_SECONDS: str(args.timeout),
    }
    values[GRAPH_ENDPOINT] = args.graph_endpoint or environ.get(GRAPH_ENDPOINT, "")
    if args.auth == AUTH_MANAGED_IDENTITY:
        values[AZURE_CLIENT_ID] = environ.get(AZURE_CLIENT_ID, "")
    try:
        return load_settings(values)
    except ConfigurationError as exc:
        raise UsageError("\n".join(exc.problems)) from None


# Output


def _printable(text: str) -> str:
    # Display names come from the tenant: keep control characters away from the terminal.
    return "".join(char if char.isprintable() else " " for char in text)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Lay out rows in left-aligned columns two spaces apart, without trailing spaces."""
    cells = [[_printable(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [list(headers), *cells]:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _definition_label(display_name: str | None, definition_id: str) -> str:
    return _shorten(_printable(display_name or definition_id), MAX_NAME_WIDTH)


class Progress:
    """Progress lines on stderr, at most one every PROGRESS_INTERVAL_S seconds."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._interval_s = PROGRESS_INTERVAL_S
        self._last = time.monotonic()

    def report(self, message: Callable[[], str]) -> None:
        """Print `message()` if progress is on and the interval has passed since the last line."""
        if self._stream is None:
            return
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return
        self._last = now
        print(message(), file=self._stream, flush=True)


# list


@dataclass(frozen=True)
class ListedInstance:
    """One InProgress instance with its definition and whether any decision is NotReviewed."""

    definition: Definition
    instance: Instance
    # None when the pending check was turned off or failed.
    pending: bool | None = None
    pending_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the instance as the JSON object that `list --json` prints."""
        body: dict[str, Any] = {
            "definitionId": self.definition.id,
            "definitionDisplayName": self.definition.display_name or None,
            "instanceId": self.instance.id,
            "status": self.instance.status,
            "startDateTime": self.instance.start_date_time,
            "endDateTime": self.instance.end_date_time,
            "pending": self.pending,
        }
        if self.pending_error:
            body["pendingError"] = self.pending_error
        return body

    def pending_label(self, checked: bool) -> str:
        if not checked:
            return "-"
        if self.pending is None:
            return "error"
        return "yes" if self.pending else "no"


@dataclass
class Listing:
    """Instances that `list` found, and a problem for each item it could not read."""

    instances: list[ListedInstance]
    problems: list[str]


async def _single(definition: Definition) -> AsyncIterator[Definition]:
    yield definition


class InstanceLister:
    """Lister of InProgress instances: many definitions at once, then each instance's decisions.

    Permission and token errors stop the listing. Any other Graph error on one definition or
    instance becomes a problem, and the listing goes on.
    """

    def __init__(self, graph: GraphClient, *, pending_check: bool, progress: Progress) -> None:
        from .batch import MAX_BATCH_SIZE

        self._graph = graph
        self._pending_check = pending_check
        self._progress = progress
        # As in the reminder jobs: the first pages of this many definitions share JSON batches.
        self._listing_slots = asyncio.Semaphore(MAX_BATCH_SIZE)
        self._check_slots = asyncio.Semaphore(graph.max_concurrency * MAX_BATCH_SIZE)
        self._problems: list[str] = []
        self._definitions_done = 0
        self._instances_found = 0

    async def run(self, definition_id: str | None) -> Listing:
        """List one definition's instances, or every definition's when `definition_id` is None.

        Raises GraphNotFoundError when the named definition does not exist.
        """
        if definition_id is not None:
            definitions = _single(await self._graph.get_definition(definition_id))
        else:
            definitions = self._graph.list_definitions()
        per_definition: list[list[ListedInstance]] = []
        try:
            async with asyncio.TaskGroup() as group:
                seen: set[str] = set()
                async for definition in definitions:
                    if definition.id in seen:
                        continue
                    seen.add(definition.id)
                    found: list[ListedInstance] = []
                    per_definition.append(found)
                    await self._listing_slots.acquire()
                    group.create_task(self._list_definition(definition, found))
        except BaseExceptionGroup as errors:
            from .jobs import first_error

            raise first_error(errors) from None
        instances = [item for found in per_definition for item in found]
        return Listing(instances, self._problems)

    async def _list_definition(self, definition: Definition, found: list[ListedInstance]) -> None:
        instances: list[Instance] = []
        # Graph can list an instance twice when its pages shift during the listing.
        seen: set[str] = set()
        try:
            async for instance in self._graph.list_instances(definition.id):
                if instance.id not in seen:
                    seen.add(instance.id)
                    instances.append(instance)
        except (GraphPermissionError, TokenError):
            raise
        except GraphError as exc:
            self._problems.append(
                f"could not list the instances of definition {definition.id}: {exc.reason}"
            )
        finally:
            self._listing_slots.release()

        if self._pending_check:
            async with asyncio.TaskGroup() as group:
                checks = [group.create_task(self._check(definition, item)) for item in instances]
            found.extend(check.result() for check in checks)
        else:
            found.extend(ListedInstance(definition, item) for item in instances)

        self._definitions_done += 1
        self._instances_found += len(instances)
        self._progress.report(
            lambda: (
                f"listed {self._instances_found} instances of "
                f"{self._definitions_done} definitions..."
            )
        )

    async def _check(self, definition: Definition, instance: Instance) -> ListedInstance:
        if not is_guid(instance.id):
            reason = "Graph listed this instance with an id that is not a GUID"
            self._problems.append(f"instance {instance.id[:64]!r} of {definition.id}: {reason}")
            return ListedInstance(definition, instance, pending_error=reason)
        async with self._check_slots:
            try:
                pending = await self._graph.has_pending_decisions(
                    instance, multi_stage=definition.multi_stage
                )
            except (GraphPermissionError, TokenError):
                raise
            except GraphError as exc:
                self._problems.append(
                    f"could not read the decisions of instance {instance.id} of definition "
                    f"{definition.id}: {exc.reason}"
                )
                return ListedInstance(definition, instance, pending_error=exc.reason)
        return ListedInstance(definition, instance, pending=pending)


def print_listing(listing: Listing, *, as_json: bool, pending_check: bool, out: TextIO) -> None:
    """Print the instances as a table or a JSON array on `out`."""
    if as_json:
        print(json.dumps([item.to_dict() for item in listing.instances], indent=2), file=out)
        return
    if not listing.instances:
        print("No InProgress instances.", file=out)
        return
    rows = [
        (
            _definition_label(item.definition.display_name, item.definition.id),
            item.instance.id,
            item.instance.status,
            item.instance.end_date_time or "-",
            item.pending_label(pending_check),
        )
        for item in listing.instances
    ]
    print(format_table(("DEFINITION", "INSTANCE", "STATUS", "ENDS", "PENDING"), rows), file=out)
    definitions = len({item.definition.id for item in listing.instances})
    print(f"\n{len(listing.instances)} instance(s) of {definitions} definition(s).", file=out)


# remind


def _counting_run(
    graph: GraphClient, options: RunOptions, on_result: Callable[[ReminderResult], None]
) -> ReminderRun:
    """Create a ReminderRun that calls `on_result` with each instance's result as it is ready."""
    from .jobs import ReminderRun

    class CountingRun(ReminderRun):
        async def process(self, *args: Any, **kwargs: Any) -> ReminderResult:
            result = await super().process(*args, **kwargs)
            on_result(result)
            return result

    return CountingRun(graph, options)


class RemindProgress:
    """Counter of results by outcome, reported through a Progress."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._counts = dict.fromkeys(Outcome, 0)

    def add(self, result: ReminderResult) -> None:
        self._counts[result.outcome] += 1
        self._progress.report(self._describe)

    def _describe(self) -> str:
        done = sum(self._counts.values())
        parts = ", ".join(f"{count} {outcome.value}" for outcome, count in self._counts.items())
        return f"processed {done} instances: {parts}..."


def print_results(
    results: Sequence[ReminderResult], *, as_json: bool, dry_run: bool, out: TextIO
) -> None:
    """Print the results as a table and a summary line, or as the HTTP API's JSON body."""
    summary = Summary.of(results)
    if as_json:
        body = {"summary": summary.to_dict(), "results": [result.to_dict() for result in results]}
        print(json.dumps(body, indent=2), file=out)
        return
    if results:
        rows = [
            (
                _definition_label(result.definition_display_name, result.definition_id),
                result.instance_id or "-",
                result.outcome.value,
                result.instance_end_date_time or "-",
                result.reason or "",
            )
            for result in results
        ]
        print(format_table(("DEFINITION", "INSTANCE", "OUTCOME", "ENDS", "REASON"), rows), file=out)
        print(file=out)
    if dry_run:
        line = (
            f"Dry run, nothing was sent: {summary.would_send} would be sent, "
            f"{summary.skipped} skipped, {summary.failed} failed."
        )
    else:
        line = f"{summary.sent} sent, {summary.skipped} skipped, {summary.failed} failed."
    print(line, file=out)


async def _remind(
    graph: GraphClient, args: argparse.Namespace, progress: Progress
) -> list[ReminderResult]:
    from .jobs import RunOptions

    options = RunOptions(
        ending_within_days=args.ending_within_days,
        dry_run=args.dry_run,
        pending_check=args.pending_check,
    )
    counter = RemindProgress(progress)
    run = _counting_run(graph, options, counter.add)
    if args.instance_id is not None:
        return [await run.remind_instance(args.definition_id, args.instance_id)]
    if args.definition_id is not None:
        return await run.remind_definition(args.definition_id)
    return await run.remind_definitions()


# Running a command


def _permission_message(exc: GraphPermissionError, auth: str, settings: Settings) -> str:
    text = exc.reason
    if exc.request_id:
        text += f" [request-id {exc.request_id}]"
    if exc.status == 401:
        return (
            f"{text}. Graph rejected the token, which may be for another cloud than "
            f"{settings.graph_endpoint}. Check --graph-endpoint and how you signed in."
        )
    if auth == AUTH_MANAGED_IDENTITY:
        identity = describe_identity(settings.managed_identity_client_id)
        return (
            f"{text}. The {identity} needs the Microsoft Graph application permission "
            f"{REQUIRED_PERMISSION}. A new grant can take up to 24 hours to reach its tokens."
        )
    return (
        f"{text}. Signed in with `az login`, you need a Microsoft Entra role that manages "
        "these reviews (such as Identity Governance Administrator), and the token needs the "
        f"delegated permission {REQUIRED_PERMISSION}. If Graph says scopes are missing in "
        "the token, Azure CLI's own app lacks that permission: run this command with "
        "--auth managed-identity on an Azure resource whose identity has it."
    )


def _report_error(exc: ReminderError, args: argparse.Namespace, settings: Settings) -> int:
    """Print what stopped the command on stderr and return its exit code."""
    if isinstance(exc, GraphPermissionError):
        message, code = _permission_message(exc, args.auth, settings), EXIT_USAGE
    elif isinstance(exc, TokenError):
        message, code = str(exc), EXIT_USAGE
    elif isinstance(exc, GraphNotFoundError):
        message = f"{exc} Check the id, and that you signed in to the tenant that has it."
        code = EXIT_USAGE
    elif isinstance(exc, InstanceNotActiveError):
        message, code = str(exc), EXIT_FAILED
    else:
        message, code = str(exc), EXIT_FAILED
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


async def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run `list` or `remind` with a Graph client of its own, and return the exit code."""
    from .graph import GraphClient

    out = sys.stdout
    stream = sys.stderr if args.progress or sys.stderr.isatty() else None
    progress = Progress(stream)
    tokens = make_token_source(args.auth, settings)
    graph = GraphClient(settings, tokens)
    try:
        if args.command == "list":
            listing = await InstanceLister(
                graph, pending_check=args.pending_check, progress=progress
            ).run(args.definition_id)
            print_listing(listing, as_json=args.json, pending_check=args.pending_check, out=out)
            for problem in listing.problems:
                print(f"{PROG}: error: {problem}", file=sys.stderr)
            return EXIT_FAILED if listing.problems else EXIT_OK

        if not args.dry_run:
            print(LEDGER_WARNING, file=sys.stderr, flush=True)
        try:
            results = await _remind(graph, args, progress)
        except ReminderError as exc:
            # A run that stops on a permission or token error still reports what it sent.
            partial = exc.partial_results
            if partial:
                print_results(partial, as_json=args.json, dry_run=args.dry_run, out=out)
            raise
        print_results(results, as_json=args.json, dry_run=args.dry_run, out=out)
        return EXIT_FAILED if Summary.of(results).failed else EXIT_OK
    except ReminderError as exc:
        return _report_error(exc, args, settings)
    finally:
        await graph.aclose()
        await tokens.close()


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if root.handlers:
        # Already configured, for example by a test runner.
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        # azure-identity warns of each failed token request, which the error message repeats.
        logging.getLogger("azure").setLevel(logging.ERROR)


def _exit_code(code: object) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "remind" and args.instance_id and not args.definition_id:
            args.command_parser.error("--instance-id needs --definition-id, not --all")
    except SystemExit as exc:
        # argparse exits with 0 after --help and with 2 after printing a usage error.
        return _exit_code(exc.code)

    _configure_logging(args.verbose)
    try:
        settings = load_cli_settings(args, os.environ)
    except UsageError as exc:
        for line in str(exc).splitlines():
            print(f"{PROG}: error: {line}", file=sys.stderr)
        return EXIT_USAGE

    try:
        return asyncio.run(run_command(args, settings))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted, and some reminders may have been sent", file=sys.stderr)
        return EXIT_INTERRUPTED
