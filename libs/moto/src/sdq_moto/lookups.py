"""Work moto's server repeats on every request, done once (moto 5.2.5).

- ``DomainDispatcherApplication.get_backend_for_host`` (``moto/moto_server/werkzeug_app.py``),
  called for every request under the dispatcher's lock, tests the host (``sqs.us-west-2.amazonaws.com``,
  ...) against ``backends.list_of_moto_modules()`` - an ``os.listdir`` of moto's package and an
  ``os.path.isdir`` per entry (≈ 1.4 ms of CPU on our machine, for a host that never matches) -
  then against every backend URL regex in turn. Its answer depends on the host alone (moto's
  installed package and its URL index do not change while it runs): it is kept per host (moto's
  "Unable to find appropriate backend" print for an unknown AWS host then appears once).
- ``BaseResponse.call_action`` (``moto/core/responses.py``) lists the response class's methods
  with ``inspect.getmembers`` on every request to check the action exists: kept per class (a
  fresh list each time, as before).
- DynamoDB's ``UpdateItem`` parses its ``UpdateExpression`` twice per request
  (``UpdateExpressionParser.make`` in ``moto/dynamodb/responses.py`` to check the placeholders,
  again in ``DynamoDBBackend.update_item``), and clients send the same few expressions over and
  over: the tree is kept per expression string. Nothing changes a parsed tree: the response only
  reads it (``find_clauses``) and the validator works on its own deep copy of it
  (``Validator.__init__``, ``moto/dynamodb/parsing/validators.py``). An expression that fails to
  parse raises every time (only trees are kept).
- ``UpdateExpressionValidator`` then runs ten passes over (a deep copy of) that tree; the first
  three look at nothing but the tree, the placeholder names and the table's key attributes
  (``ActionCountValidator``: one clause of each kind, and it calls ``find_clauses`` on every
  nested node, quadratic in the expression; ``OverlappingPathsValidator``;
  ``UpdateHashRangeKeyValidator``), raise or return each node unchanged. Once they passed for a
  kept tree with the same names and key attributes, they are skipped for it; the seven passes
  that read the item or the values always run. (The agent's claim, 14 SET actions, spent about
  half of its ≈ 20 ms in those three passes.)
- The validator first deep-copies the tree (``deepcopy`` in ``Validator.__init__``: the passes
  replace its nodes), ≈ 1,400 Python-level ``copy`` calls for the claim. A kept tree is pickled
  once and each copy unpickled (the same objects rebuilt through the same ``__reduce_ex__``
  protocol, in C); a tree that cannot be pickled is deep-copied as before.
- ``UpdateItem`` also parses its ``ConditionExpression`` twice with the same names and values
  (``ConditionExpressionParser.parse``, ``moto/dynamodb/comparisons.py``: in the response to
  list the placeholders used, in the backend to evaluate it). The last few parses are kept by
  (expression, names, values), with the placeholders the parse found; a kept condition is
  returned as it is: its nodes are only assigned in their constructors, and evaluating them
  (``expr(item)``) reads the item.
"""

from __future__ import annotations

import copy
import functools
import importlib
import pickle
import threading
from typing import Any

_MARK = "_sdq_cached"
_PATCHING = threading.Lock()


def _per_host(lookup: Any) -> Any:
    @functools.wraps(lookup)
    def get_backend_for_host(self: Any, host: str | None) -> Any:
        answers: dict[str | None, Any] = self.__dict__.setdefault("_sdq_backend_for_host", {})
        if host not in answers:
            answers[host] = lookup(self, host)
        return answers[host]

    setattr(get_backend_for_host, _MARK, True)
    return get_backend_for_host


def _per_class(names_of: Any) -> Any:
    known: dict[type, tuple[str, ...]] = {}

    @functools.wraps(names_of)
    def method_names_from_class(clazz: type) -> list[str]:
        if clazz not in known:
            known[clazz] = tuple(names_of(clazz))
        return list(known[clazz])

    setattr(method_names_from_class, _MARK, True)
    return method_names_from_class


_PARSED_KEPT = 512  # distinct expressions kept; sdq's clients send a dozen
# The passes that read only the tree, the placeholder names and the table's key attributes.
_TREE_ONLY = ("ActionCountValidator", "OverlappingPathsValidator", "UpdateHashRangeKeyValidator")


class _Parsed:
    """Kept trees by expression, and for each kept tree the (names, key attributes) its
    tree-only passes accepted."""

    def __init__(self) -> None:
        self.trees: dict[str, Any] = {}
        self.accepted: dict[int, tuple[Any, set[Any]]] = {}  # id(tree) -> (tree, checks)
        self.pickled: dict[int, tuple[Any, bytes | None]] = {}  # id(tree) -> (tree, pickle)

    def tree(self, make: Any, expression: str) -> Any:
        tree = self.trees.get(expression)
        if tree is None:
            tree = make(expression)
            if len(self.trees) >= _PARSED_KEPT:
                self.trees.clear()
                self.accepted.clear()
                self.pickled.clear()
            self.trees[expression] = tree
            self.accepted[id(tree)] = (tree, set())
        return tree

    def copy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        """A deep copy; by unpickling for a kept tree."""
        entry = self.pickled.get(id(value))
        if entry is None and self.checks(value) is not None:
            try:
                entry = (value, pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
            except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
                entry = (value, None)
            self.pickled[id(value)] = entry
        if entry is None or entry[0] is not value or entry[1] is None:
            return copy.deepcopy(value, memo)
        return pickle.loads(entry[1])  # noqa: S301 - our own pickle of moto's own tree

    def checks(self, tree: Any) -> set[Any] | None:
        """The accepted checks of a kept tree (None for any other tree)."""
        entry = self.accepted.get(id(tree))
        return entry[1] if entry is not None and entry[0] is tree else None


_PARSED = _Parsed()


def _check_of(validator: Any) -> Any:
    names = validator.expression_attribute_names or {}
    return (frozenset(names.items()), tuple(validator.table.table_key_attrs))


def _per_expression(make: Any) -> Any:
    @functools.wraps(make)
    def make_once(expression: str) -> Any:
        return _PARSED.tree(make, expression)

    setattr(make_once, _MARK, True)
    return make_once


def _skip_accepted_passes(validator_class: Any) -> None:
    init = validator_class.__init__
    passes = validator_class.get_ast_processors
    validate = validator_class.validate

    @functools.wraps(init)
    def __init__(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        self._sdq_tree = expression
        init(self, expression, *args, **kwargs)

    @functools.wraps(passes)
    def get_ast_processors(self: Any) -> Any:
        processors = passes(self)
        checks = _PARSED.checks(self._sdq_tree)
        if checks is not None and _check_of(self) in checks:
            processors = [p for p in processors if type(p).__name__ not in _TREE_ONLY]
        return processors

    @functools.wraps(validate)
    def validate_and_note(self: Any) -> Any:
        result = validate(self)
        checks = _PARSED.checks(self._sdq_tree)
        if checks is not None:
            checks.add(_check_of(self))
        return result

    validator_class.__init__ = __init__
    validator_class.get_ast_processors = get_ast_processors
    validator_class.validate = validate_and_note
    setattr(validator_class, _MARK, True)


_CONDITIONS_KEPT = 16  # the same condition is parsed twice within one request


def _per_condition(parse: Any) -> Any:
    kept: dict[str, tuple[Any, list[str], list[str]]] = {}
    lock = threading.Lock()

    @functools.wraps(parse)
    def parse_once(self: Any) -> Any:
        key = repr(
            (
                self.condition_expression,
                self.expression_attribute_names,
                self.expression_attribute_values,
            )
        )
        with lock:
            hit = kept.get(key)
        if hit is None:
            op = parse(self)
            with lock:
                if len(kept) >= _CONDITIONS_KEPT:
                    kept.clear()
                kept[key] = (
                    op,
                    list(self.expr_attr_names_found),
                    list(self.expr_attr_values_found),
                )
            return op
        op, names_found, values_found = hit
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        return op

    setattr(parse_once, _MARK, True)
    return parse_once


def cache_request_lookups() -> None:
    """Keep moto's per-request lookups and parsed update expressions (see the module).
    Idempotent."""
    # moto is heavy to import; imported as Any: its modules do not export what is patched
    responses: Any = importlib.import_module("moto.core.responses")
    expressions: Any = importlib.import_module("moto.dynamodb.parsing.expressions")
    werkzeug_app: Any = importlib.import_module("moto.moto_server.werkzeug_app")
    DomainDispatcherApplication = werkzeug_app.DomainDispatcherApplication
    UpdateExpressionParser = expressions.UpdateExpressionParser
    validators: Any = importlib.import_module("moto.dynamodb.parsing.validators")
    comparisons: Any = importlib.import_module("moto.dynamodb.comparisons")

    with _PATCHING:
        if not getattr(DomainDispatcherApplication.get_backend_for_host, _MARK, False):
            lookup = _per_host(DomainDispatcherApplication.get_backend_for_host)
            DomainDispatcherApplication.get_backend_for_host = lookup
        if not getattr(responses.method_names_from_class, _MARK, False):
            responses.method_names_from_class = _per_class(responses.method_names_from_class)
        if not getattr(UpdateExpressionParser.make, _MARK, False):
            make = _per_expression(UpdateExpressionParser.make)
            UpdateExpressionParser.make = staticmethod(make)
        if not getattr(validators.UpdateExpressionValidator, _MARK, False):
            _skip_accepted_passes(validators.UpdateExpressionValidator)
            validators.deepcopy = _PARSED.copy  # the module's `from copy import deepcopy`
        parser = comparisons.ConditionExpressionParser
        if not getattr(parser.parse, _MARK, False):
            parser.parse = _per_condition(parser.parse)
