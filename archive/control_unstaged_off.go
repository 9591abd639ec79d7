//go:build !clickpipe_broken_unstaged

package archive

// brokenUnstaged, set only by the build tag clickpipe_broken_unstaged,
// writes objects straight under the table's data prefix before the
// manifest, as the lake did before staging: a negative control for the
// glob-reader checker (test/reliability/glob_test.go).
const brokenUnstaged = false
