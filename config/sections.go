package config

// validateSections validates the subsystem sections that validate
// themselves; extended as subsystems land.
func (c *Config) validateSections() []error { return nil }
