module github.com/gorse-io/dashboard

go 1.26

require github.com/rakyll/statik v0.1.8
