// Package dashboard stands in for github.com/gorse-io/dashboard, whose versions the Go module
// proxy reachable from this project's machines refuses (403). Gorse's master serves the
// dashboard's static files through statik; this stub registers a one-page archive so the
// master starts. The REST API, which is all gorse-cdc uses, is unaffected.
package dashboard

import (
	"archive/zip"
	"bytes"

	"github.com/rakyll/statik/fs"
)

const page = `<!doctype html><title>Gorse</title>
<p>The Gorse dashboard is not bundled in this build (gorse-cdc local stack). The REST API is at /api/.</p>`

func init() {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	f, err := w.Create("index.html")
	if err != nil {
		panic(err)
	}
	if _, err = f.Write([]byte(page)); err != nil {
		panic(err)
	}
	if err = w.Close(); err != nil {
		panic(err)
	}
	fs.Register(buf.String())
}
