"""watcher: polls news feeds, matches articles against rules, alerts through Apprise.

scheduler tick -> fetch (conditional GET) -> parse (bytes -> articles)
  -> store.ingest (new articles, their matches and deliveries, in one transaction)
  -> notify (Apprise) -> store records the outcome
"""

__version__ = "0.1.0"
