//go:build !clickpipe_crashpoints

package archive

// crashpoints names the steps of the commit protocol where a test build
// (tag clickpipe_crashpoints) can end the process at once, as kill -9
// would: the crash tests of test/reliability stop at each step
// deterministically instead of hoping a random kill lands there. In
// other builds it does nothing.
type crashpoints struct{}

func (*crashpoints) at(string) {}
