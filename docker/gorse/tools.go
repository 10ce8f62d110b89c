//go:build tools

// Package tools pins the Gorse commands this wrapper module builds.
package tools

import (
	_ "github.com/gorse-io/gorse/cmd/gorse-in-one"
)
