package cmd

import (
	"os"
	"testing"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clickpipetest.RemoveBinary()
	os.Exit(code)
}
