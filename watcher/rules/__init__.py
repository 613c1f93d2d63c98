"""The rule matcher: which articles a rule's ``match`` string selects, and why. No I/O.

    compile_query(match, entities) -> Query;  Query.match(Document(...)) -> terms that matched

``text`` owns what a word is and the per-article index; ``query`` owns the language. Callers
import from here only, so the language can grow behind these three names.
"""

from watcher.rules.query import Query, compile_query
from watcher.rules.text import Document

__all__ = ["Document", "Query", "compile_query"]
