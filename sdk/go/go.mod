module github.com/flk-dev/flk/sdk/go

go 1.19
