package buffertest

import "go.uber.org/goleak"

// LeakOptions are the goleak exceptions for goroutines the embedded
// nats-server (and its dependencies) may leave behind a clean Close; pass
// them to goleak.VerifyTestMain in every package that runs a buffer.
// Each one is narrow: a Buffer left open still leaks its accept loops,
// route readers and client goroutines, which stay reported.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		// Server.Start's helper goroutine outlives a Shutdown that
		// races with the start.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		// A clustered stream that the meta group assigns while the
		// server shuts down (a replica being added when the test
		// ends) gets a file store after JetStream removed the
		// account's streams; nothing stops that store, so its
		// state-flush loop and the access-time ticker it registered
		// remain (nats-server v2.15.2; seen once in CI in ./buffer).
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	}
}
