package config

// validateSections validates the subsystem sections that validate
// themselves.
func (c *Config) validateSections() []error {
	return []error{c.Ingest.Validate(), c.Process.Validate(), c.Serve.Validate(), c.Archive.Validate(), c.Regulation.Validate(), c.Snapshot.Validate()}
}
