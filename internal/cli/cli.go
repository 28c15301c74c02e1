// Package cli holds what the Wirelace commands share on their command
// lines: one-line errors, usage only on --help, and the log level flag.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Parse parses args into fs, a command that takes only flags. A mistake
// comes back as one line for main to print, not the whole usage; --help
// prints the usage (name and about, then the flags) to stdout and returns
// flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string, name, about string) error {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\n%s Flags:\n", name, about)
		fs.PrintDefaults()
	}
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.Usage()
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes only flags", fs.Arg(0), name)
	}
	return nil
}

// LogLevel parses a --log-level value.
func LogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
