package process_test

import (
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/state"
)

var (
	_ process.Store            = (*state.Store)(nil)
	_ process.Fetcher          = (*buffer.Consumer)(nil)
	_ process.SessionPublisher = (*buffer.Buffer)(nil)
)
