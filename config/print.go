package config

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Redacted is what secrets print as.
const Redacted = "<redacted>"

// Print writes the effective configuration as YAML, with every field
// tagged secret:"true" (and everything below it) redacted.
func (c *Config) Print(w io.Writer) error {
	var b strings.Builder
	printStruct(&b, reflect.ValueOf(*c), 0, false)
	_, err := io.WriteString(w, b.String())
	return err
}

func printStruct(b *strings.Builder, v reflect.Value, indent int, secret bool) {
	t := v.Type()
	pad := strings.Repeat("  ", indent)
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		fv := v.Field(i)
		sec := secret || f.Tag.Get("secret") == "true"
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time":
			fmt.Fprintf(b, "%s%s:\n", pad, tag)
			printStruct(b, fv, indent+1, sec)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			if fv.Len() == 0 {
				fmt.Fprintf(b, "%s%s: []\n", pad, tag)
				continue
			}
			fmt.Fprintf(b, "%s%s:\n", pad, tag)
			for j := range fv.Len() {
				var item strings.Builder
				printStruct(&item, fv.Index(j), 0, sec)
				lines := strings.Split(strings.TrimRight(item.String(), "\n"), "\n")
				for k, l := range lines {
					lead := "  "
					if k == 0 {
						lead = "- "
					}
					fmt.Fprintf(b, "%s  %s%s\n", pad, lead, l)
				}
			}
		case f.Type.Kind() == reflect.Map:
			if fv.Len() == 0 {
				fmt.Fprintf(b, "%s%s: {}\n", pad, tag)
				continue
			}
			fmt.Fprintf(b, "%s%s:\n", pad, tag)
			keys := fv.MapKeys()
			strs := make([]string, len(keys))
			for j, k := range keys {
				strs[j] = fmt.Sprint(k.Interface())
			}
			slices.Sort(strs)
			for _, k := range strs {
				fmt.Fprintf(b, "%s  %s: %s\n", pad, k, scalar(fv.MapIndex(reflect.ValueOf(k).Convert(fv.Type().Key())), sec))
			}
		case strings.HasSuffix(tag, "_bytes") && fv.CanInt() && !sec:
			fmt.Fprintf(b, "%s%s: %s\n", pad, tag, formatSize(fv.Int()))
		default:
			fmt.Fprintf(b, "%s%s: %s\n", pad, tag, scalar(fv, sec))
		}
	}
}

func scalar(v reflect.Value, secret bool) string {
	if secret && !v.IsZero() {
		if v.Kind() == reflect.Slice {
			parts := make([]string, v.Len())
			for i := range parts {
				parts[i] = strconv.Quote(Redacted)
			}
			return "[" + strings.Join(parts, ", ") + "]"
		}
		return strconv.Quote(Redacted)
	}
	switch x := v.Interface().(type) {
	case time.Duration:
		return formatDuration(x)
	case string:
		return strconv.Quote(x)
	}
	if v.Kind() == reflect.Slice {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = scalar(v.Index(i), false)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// formatSize prints a byte count in the largest binary unit that divides
// it exactly (2GiB, 500KiB), as config.yaml writes sizes; ParseSize reads
// it back.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// formatDuration drops the zero minutes and seconds time.Duration.String
// adds (30m, 168h, 1h30m rather than 30m0s, 168h0m0s, 1h30m0s).
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
