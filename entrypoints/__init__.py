"""The entry points above the core: the `gorse-cdc` command line, the demo, and the local stack
(installs, processes, emulators). Nothing below imports this package (import-linter contract)."""
