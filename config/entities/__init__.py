"""Built-in entity packs (generated TOML), shipped inside the package as watcher._packs."""
