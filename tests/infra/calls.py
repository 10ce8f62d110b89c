"""The AWS calls a deployed command makes, read from the Python sources (``ast``), no list kept
by hand: a new call in the code shows up here, and the grant test fails until a role allows it.

How a call is found. ``gorse-cdc <words>`` runs the function its subcommand registers
(``set_defaults(func=...)`` under ``entrypoints.cli.SUBCOMMANDS``). From that function the code
it can reach is followed: names it calls or passes (functions, classes: constructing a class
reaches its methods by name), imported modules' functions, and methods by name among the
classes reached so far (an over-approximation: a method name reached on any object counts for
every reached class that defines it). In the reached code, ``<receiver>.<method>(...)`` is an
AWS call when ``method`` is an operation of a service the project opens clients for (botocore's
own models: ``put_records`` -> Kinesis ``PutRecords``) called with keyword arguments only (as
botocore's methods are), and the receiver is not typed as one of the project's own classes
(``GorseClient.get_item(item_id)`` is not DynamoDB's). ``get_paginator("x")``
and ``get_waiter("x")`` count as the operation they run.

What a call touches is the settings field the module's client was built for (RESOURCE_OF);
a module with AWS calls that RESOURCE_OF does not place fails the tests.
"""

from __future__ import annotations

import ast
import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("consumers", "gateway", "gorse_cdc", "entrypoints", "glue", "producers")

# Where each module's AWS calls go: (service, settings field naming the resource). The field is
# what the module's client object was built for in the wiring (consumers/wiring.py,
# gateway/wiring.py); "s3.prefix" means objects under <s3.bucket>/<prefix>/.
RESOURCE_OF: dict[tuple[str, str], str] = {
    ("consumers.kinesis.reader", "kinesis"): "kinesis.stream_name",
    ("consumers.kinesis.shards", "kinesis"): "kinesis.stream_name",
    ("consumers.kinesis.fanout", "kinesis"): "kinesis.stream_name",
    ("gorse_cdc.refresh_records", "kinesis"): "kinesis.stream_name",
    ("consumers.leases.table", "dynamodb"): "leases.table",
    ("consumers.replay.checkpoints", "dynamodb"): "replay.table",
    ("consumers.replay.runner", "dynamodb"): "leases.table",  # is the live lease table there?
    ("consumers.sink.erasures", "dynamodb"): "consumer.erasures_table",
    ("consumers.deadletter_stores", "s3"): "dead_letters.s3_prefix",
    ("consumers.deadletter_stores", "sqs"): "dead_letters.sqs_queue",
    ("consumers.replay.redrive", "s3"): "dead_letters.s3_prefix",
    ("consumers.replay.redrive", "kinesis"): "kinesis.stream_name",
    ("consumers.replay.superseded", "kinesis"): "kinesis.stream_name",
    ("consumers.replay.superseded", "s3"): "s3.prefix",
    ("consumers.replay.redrive", "sqs"): "dead_letters.sqs_queue",
    ("consumers.replay.archive", "s3"): "s3.prefix",
    ("consumers.replay.s3_source", "s3"): "s3.prefix",
    ("gateway.keystore", "dynamodb"): "gateway.keys_table",
    ("gateway.wiring", "dynamodb"): "gateway.keys_table",
    ("gateway.publisher", "kinesis"): "gateway.events_stream",
}

# A command whose module's client serves several resources: the calls are required on each.
# The replay borrows the live consumer's leases and keeps its checkpoints in a table of its own,
# both through consumers.leases.table.LeaseTable.
RESOURCES_IN: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("replay", "consumers.leases.table", "dynamodb"): ("leases.table", "replay.table"),
}


def fields_for(words: list[str], module: str, service: str) -> tuple[str, ...]:
    """The settings fields naming what ``module``'s ``service`` calls touch in ``words``."""
    special = RESOURCES_IN.get((" ".join(words), module, service))
    if special:
        return special
    one = RESOURCE_OF.get((module, service))
    return (one,) if one else ()


# API operation -> IAM action where the two differ (AWS's Service Authorization Reference).
IAM_ACTION_OF = {
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:DeleteObjects": "s3:DeleteObject",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


@dataclass(frozen=True)
class Call:
    """One AWS call site: ``service:Operation`` as IAM names it, where it is."""

    action: str
    module: str
    line: int

    @property
    def service(self) -> str:
        return self.action.split(":")[0]

    def __str__(self) -> str:
        return f"{self.action} ({self.module}:{self.line})"


# ---- the sources ---------------------------------------------------------------------------
@dataclass
class Unit:
    """A top-level function or a method (nested functions and lambdas belong to it)."""

    module: str
    cls: str | None
    name: str
    node: ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class Module:
    name: str
    tree: ast.Module
    imports: dict[str, str]  # local name -> "module" or "module.name"
    functions: dict[str, Unit]
    classes: dict[str, dict[str, Unit]]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.Module, module: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.walk(tree):  # function-local imports too (the CLIs import lazily)
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[: -node.level]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                out[a.asname or a.name] = f"{base}.{a.name}"
    return out


@functools.cache
def modules() -> dict[str, Module]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = _module_name(path)
            tree = ast.parse(path.read_text(), str(path))
            functions: dict[str, Unit] = {}
            classes: dict[str, dict[str, Unit]] = {}
            for node in tree.body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    functions[node.name] = Unit(name, None, node.name, node)
                elif isinstance(node, ast.ClassDef):
                    classes[node.name] = {
                        n.name: Unit(name, node.name, n.name, n)
                        for n in node.body
                        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    }
            out[name] = Module(name, tree, _imports(tree, name), functions, classes)
    return out


def _project_classes() -> set[str]:
    return {c for m in modules().values() for c in m.classes}


# ---- AWS operations ------------------------------------------------------------------------
@functools.cache
def _botocore() -> tuple[object, frozenset[str]]:
    import botocore.session

    session = botocore.session.get_session()
    return session, frozenset(session.get_available_services())


@functools.cache
def services_used() -> frozenset[str]:
    """Services the project opens clients for: botocore service names given as string literals
    in modules that call ``create_client`` or ``boto3.client``."""
    _, available = _botocore()
    found: set[str] = set()
    for m in modules().values():
        src = ast.unparse(m.tree)
        if "create_client(" not in src and "boto3.client(" not in src and "open_aws(" not in src:
            continue
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in available:
                found.add(node.value)
    # callers of a client factory (gateway.wiring.open_aws(settings, "dynamodb", "kinesis"))
    for m in modules().values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Call) and _callee_name(node) in ("open_aws", "create_client", "client"):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and arg.value in available:
                        found.add(str(arg.value))
    return frozenset(found)


def _callee_name(call: ast.Call) -> str | None:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


@functools.cache
def operations() -> dict[str, list[tuple[str, str]]]:
    """snake_case method -> [(service, OperationName)] over the services used."""
    from botocore import xform_name

    session, _ = _botocore()
    out: dict[str, list[tuple[str, str]]] = {}
    for service in sorted(services_used()):
        model = session.get_service_model(service)  # type: ignore[attr-defined]
        for op in model.operation_names:
            out.setdefault(xform_name(op), []).append((service, op))
    return out


@functools.cache
def _required_input(service: str, operation: str) -> bool:
    """Whether the operation has required parameters (then a call without arguments is not it:
    ``SecretStr.get_secret_value()`` is not Secrets Manager's)."""
    session, _ = _botocore()
    shape = session.get_service_model(service).operation_model(operation).input_shape  # type: ignore[attr-defined]
    return bool(shape is not None and shape.required_members)


def _iam_prefix(service: str) -> str:
    session, _ = _botocore()
    return str(session.get_service_model(service).signing_name)  # type: ignore[attr-defined]


def iam_action(service: str, operation: str) -> str:
    action = f"{_iam_prefix(service)}:{operation}"
    return IAM_ACTION_OF.get(action, action)


def _paged_operation(service: str, method: str, arg: str) -> str | None:
    session, _ = _botocore()
    if method == "get_paginator":
        model = session.get_service_model(service)  # type: ignore[attr-defined]
        for op in model.operation_names:
            from botocore import xform_name

            if xform_name(op) == arg:
                return str(op)
    if method == "get_waiter":
        from botocore import xform_name
        from botocore.exceptions import DataNotFoundError

        try:
            waiters = session.get_waiter_model(service)  # type: ignore[attr-defined]
        except DataNotFoundError:
            return None
        for name in waiters.waiter_names:
            if xform_name(name) == arg:
                return str(waiters.get_waiter(name).operation)
    return None


# ---- receivers typed as project classes ------------------------------------------------------
def _annotation_names(ann: ast.expr | None) -> set[str]:
    if ann is None:
        return set()
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        try:
            ann = ast.parse(ann.value, mode="eval").body
        except SyntaxError:
            return set()
    return {n.id for n in ast.walk(ann) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(ann) if isinstance(n, ast.Attribute)
    }


def _param_types(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, set[str]]:
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    return {a.arg: _annotation_names(a.annotation) for a in args}


@functools.cache
def _attribute_types(module: str, cls: str) -> dict[str, set[str]]:
    """self.<attr> -> the names in its annotation (or its constructor parameter's)."""
    m = modules()[module]
    node = next(n for n in m.tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    out: dict[str, set[str]] = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            out[stmt.target.id] = _annotation_names(stmt.annotation)
    for unit in m.classes[cls].values():
        params = _param_types(unit.node)
        for n in ast.walk(unit.node):
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(n, ast.Assign):
                targets, value = n.targets, n.value
            elif isinstance(n, ast.AnnAssign):
                targets, value = [n.target], n.value
                if _is_self_attr(n.target):
                    out.setdefault(n.target.attr, set()).update(_annotation_names(n.annotation))  # type: ignore[union-attr]
            for t in targets:
                if _is_self_attr(t) and isinstance(value, ast.Name) and value.id in params:
                    out.setdefault(t.attr, set()).update(params[value.id])  # type: ignore[attr-defined]
                elif _is_self_attr(t) and isinstance(value, ast.Call):
                    callee = value.func
                    name = callee.id if isinstance(callee, ast.Name) else None
                    if isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name):
                        name = callee.value.id  # Class.from_settings(...)
                    if name:
                        out.setdefault(t.attr, set()).add(name)  # type: ignore[attr-defined]
    return out


def _is_self_attr(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"


def _is_project_object(receiver: ast.expr, unit: Unit) -> bool:
    project = _project_classes()
    if _is_self_attr(receiver) and unit.cls is not None:
        return bool(_attribute_types(unit.module, unit.cls).get(receiver.attr, set()) & project)  # type: ignore[attr-defined]
    if isinstance(receiver, ast.Name):
        if receiver.id in project:
            return True
        return bool(_param_types(unit.node).get(receiver.id, set()) & project)
    return False


# ---- reachability from a command -----------------------------------------------------------
def _entry_points() -> dict[tuple[str, ...], tuple[str, str]]:
    """Subcommand words -> (module, function) of every ``set_defaults(func=...)``."""
    cli = modules()["entrypoints.cli"]
    listed: list[str] = []
    for node in cli.tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "SUBCOMMANDS" for t in node.targets
        ):
            listed = [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    out: dict[tuple[str, ...], tuple[str, str]] = {}
    for name in listed:
        register = modules()[name].functions["register"].node
        paths: dict[str, tuple[str, ...]] = {register.args.args[0].arg: ()}
        for stmt in ast.walk(register):
            if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                path = _parser_path(stmt.value, paths)
                if path is not None:
                    paths[stmt.targets[0].id] = path
            elif (
                isinstance(stmt, ast.Call)
                and isinstance(stmt.func, ast.Attribute)
                and stmt.func.attr == "set_defaults"
                and isinstance(stmt.func.value, ast.Name)
            ):
                for kw in stmt.keywords:
                    if kw.arg == "func" and isinstance(kw.value, ast.Name):
                        out[paths[stmt.func.value.id]] = (name, kw.value.id)
    return out


def _parser_path(value: ast.expr, paths: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Attribute):
        return None
    inner = value.func.value
    base = paths.get(inner.id) if isinstance(inner, ast.Name) else _parser_path(inner, paths)
    if base is None:
        return None
    if value.func.attr == "add_subparsers":
        return base
    if value.func.attr == "add_parser" and value.args and isinstance(value.args[0], ast.Constant):
        return (*base, str(value.args[0].value))
    return None


def entry_for(words: list[str]) -> tuple[str, str]:
    """The (module, function) that ``gorse-cdc <words>`` runs (the longest registered prefix)."""
    entries = _entry_points()
    for n in range(len(words), 0, -1):
        if tuple(words[:n]) in entries:
            return entries[tuple(words[:n])]
    raise KeyError(f"no subcommand registers {' '.join(words)!r}")


def _resolve(module: str, dotted: str) -> tuple[str, str | None] | None:
    """A name as the module sees it -> (module, top-level name) in the project."""
    ms = modules()
    target = ms[module].imports.get(dotted.split(".")[0])
    if target is None:
        return (module, dotted) if dotted in ms[module].functions or dotted in ms[module].classes else None
    if target in ms:
        return (target, None)
    mod, _, name = target.rpartition(".")
    if mod in ms:
        return (mod, name)
    return None


def reachable(module: str, function: str) -> list[Unit]:
    """Every unit reachable from ``module.function`` (see the module docstring)."""
    ms = modules()
    seen: set[tuple[str, str | None, str]] = set()
    classes: set[tuple[str, str]] = set()
    names: set[str] = set()  # attribute names used anywhere reached
    todo = [ms[module].functions[function]]
    out: list[Unit] = []

    def add(unit: Unit) -> None:
        key = (unit.module, unit.cls, unit.name)
        if key not in seen:
            seen.add(key)
            todo.append(unit)

    def add_class(mod: str, cls: str) -> None:
        if (mod, cls) in classes:
            return
        classes.add((mod, cls))
        for mname, unit in ms[mod].classes[cls].items():
            if mname.startswith("__") or mname in names:
                add(unit)
        for base in _bases(mod, cls):
            add_class(*base)

    while todo:
        unit = todo.pop()
        out.append(unit)
        m = ms[unit.module]
        for node in ast.walk(unit.node):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                target = _resolve(unit.module, node.id)
                if target:
                    _add_top(target, add, add_class)
            elif isinstance(node, ast.Attribute):
                if isinstance(node.value, ast.Name):
                    target = _resolve(unit.module, node.value.id)
                    if target and target[1] is None:  # module.attr
                        _add_top((target[0], node.attr), add, add_class)
                if node.attr not in names:
                    names.add(node.attr)
                    for mod, cls in list(classes):
                        if node.attr in ms[mod].classes[cls]:
                            add(ms[mod].classes[cls][node.attr])
        del m
    return out


def _bases(mod: str, cls: str) -> Iterator[tuple[str, str]]:
    node = next(n for n in modules()[mod].tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    for b in node.bases:
        if isinstance(b, ast.Name):
            target = _resolve(mod, b.id)
            if target and target[1] and target[1] in modules()[target[0]].classes:
                yield (target[0], target[1])


def _add_top(target: tuple[str, str | None], add, add_class) -> None:  # type: ignore[no-untyped-def]
    mod, name = target
    if name is None or mod not in modules():
        return
    m = modules()[mod]
    if name in m.functions:
        add(m.functions[name])
    elif name in m.classes:
        add_class(mod, name)
    elif name in m.imports:  # re-exported from a package's __init__
        again = _resolve(mod, name)
        if again and again != target:
            _add_top(again, add, add_class)


# ---- the calls -----------------------------------------------------------------------------
def calls_in(unit: Unit) -> Iterator[Call]:
    ops = operations()
    for node in ast.walk(unit.node):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method, receiver = node.func.attr, node.func.value
        if method in ("get_paginator", "get_waiter"):
            if not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            hits = []
            for service in sorted(services_used()):
                op = _paged_operation(service, method, str(node.args[0].value))
                if op:
                    hits.append((service, op))
        elif node.args:
            continue  # botocore's methods take keyword arguments only
        else:
            hits = [h for h in ops.get(method, []) if node.keywords or not _required_input(*h)]
        if not hits or _is_project_object(receiver, unit):
            continue
        hits = _disambiguate(hits, receiver, unit)
        for service, op in hits:
            yield Call(iam_action(service, op), unit.module, node.lineno)


def _disambiguate(hits: list[tuple[str, str]], receiver: ast.expr, unit: Unit) -> list[tuple[str, str]]:
    """One service per call: the one the receiver or the module names, else the only one."""
    if len(hits) == 1:
        return hits
    words = ast.unparse(receiver).lower() + " " + unit.module
    named = [h for h in hits if h[0] in words or (h[0] == "dynamodb" and "ddb" in words)]
    if len(named) == 1:
        return named
    raise AssertionError(f"{unit.module}: {ast.unparse(receiver)} call of {hits} names no one service")


def _programs_started(units: list[Unit]) -> set[str]:
    """Project modules the reached code starts as ``python -m <module>`` (the KCL daemon's
    record processors: consumers/kcl/properties.py ``f"{python} -m {PROCESSOR_MODULE}"``)."""
    out = set()
    for unit in units:
        consts = {
            t.id: n.value.value
            for n in modules()[unit.module].tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(unit.node):
            if not isinstance(node, ast.JoinedStr):
                continue
            parts = node.values
            for before, value in itertools.pairwise(parts):
                if (
                    isinstance(before, ast.Constant)
                    and str(before.value).endswith("-m ")
                    and isinstance(value, ast.FormattedValue)
                    and isinstance(value.value, ast.Name)
                    and value.value.id in consts
                ):
                    out.add(f"{consts[value.value.id]}.__main__")
    return {m for m in out if m in modules() and "main" in modules()[m].functions}


def calls_of(words: list[str]) -> list[Call]:
    """Every AWS call ``gorse-cdc <words>`` can make, with the programs it starts."""
    units = reachable(*entry_for(words))
    for program in sorted(_programs_started(units)):
        units += reachable(program, "main")
    return sorted({c for unit in units for c in calls_in(unit)}, key=lambda c: (c.action, c.module, c.line))
