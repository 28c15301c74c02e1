package device

import (
	"context"
	"fmt"
	"log/slog"

	"golang.zx2c4.com/wireguard/device"
)

// wgLogger adapts slog to wireguard-go's printf-style logger. Its verbose lines
// become Debug records; the check avoids formatting them when Debug is off,
// because some are logged per packet.
func wgLogger(log *slog.Logger) *device.Logger {
	log = log.With("component", "wireguard-go")
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			log.Error(fmt.Sprintf(format, args...))
		},
	}
}
