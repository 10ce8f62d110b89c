//go:build tools

// Package tools pins the Gorse commands this wrapper module builds (entrypoints/stack/install.py).
package tools

import (
	_ "github.com/gorse-io/gorse/cmd/gorse-in-one"
	_ "github.com/gorse-io/gorse/cmd/gorse-master"
	_ "github.com/gorse-io/gorse/cmd/gorse-server"
	_ "github.com/gorse-io/gorse/cmd/gorse-worker"
)
