"""The rule matcher: which articles a rule's ``match`` string selects, where, and why. No I/O.

    compile_query(match, entities) -> Query
    Query.match(Document(...)) -> terms;  .hits(...) -> (Hit, ...);  .explain(...) -> Explanation
    RuleSet({name: query}).match(document) -> [(name, terms), ...]  (many rules at once)

``text`` owns what a word is, ``document`` the per-article index, ``syntax`` the language,
``nodes`` the compiled matchers, ``regex`` RE2. Callers import from here only, so the
language can grow behind these names.
"""

from watcher.rules.document import Document
from watcher.rules.query import Entity, Query, compile_query
from watcher.rules.results import Explanation, Hit
from watcher.rules.ruleset import RuleSet

__all__ = ["Document", "Entity", "Explanation", "Hit", "Query", "RuleSet", "compile_query"]
