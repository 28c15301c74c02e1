package protocol

import (
	"bufio"
	"encoding/binary"
	"fmt"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Writer writes frames to a byte stream through a bufio.Writer, so that a
// burst of packets leaves in few system calls; call Flush when the burst
// ends. It is not safe for concurrent use.
type Writer struct {
	bw *bufio.Writer
	// hdr holds a header and, for packet frames, the key: one Write for
	// both, and a key copied here rather than sliced from the caller's
	// array, which would make it escape to the heap on every call.
	hdr [HeaderLen + KeyLen]byte
}

// NewWriter writes frames to bw.
func NewWriter(bw *bufio.Writer) *Writer {
	return &Writer{bw: bw}
}

// WriteFrame buffers one frame with the given payload.
func (w *Writer) WriteFrame(t Type, payload []byte) error {
	if len(payload) > MaxPayloadLen {
		return fmt.Errorf("write %v frame of %d bytes: %w", t, len(payload), ErrFrameTooLarge)
	}
	w.header(t, len(payload))
	if _, err := w.bw.Write(w.hdr[:HeaderLen]); err != nil {
		return err
	}
	_, err := w.bw.Write(payload)
	return err
}

// WritePacket buffers a SendPacket or RecvPacket frame: the peer's key, then
// the datagram. Taking the two parts separately saves the caller a copy.
func (w *Writer) WritePacket(t Type, key wgtypes.Key, pkt []byte) error {
	if len(pkt) > MaxPacketLen {
		return fmt.Errorf("write %v of %d bytes (limit %d): %w", t, len(pkt), MaxPacketLen, ErrFrameTooLarge)
	}
	w.header(t, KeyLen+len(pkt))
	copy(w.hdr[HeaderLen:], key[:])
	if _, err := w.bw.Write(w.hdr[:]); err != nil {
		return err
	}
	_, err := w.bw.Write(pkt)
	return err
}

// Flush writes out everything buffered.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Buffered is the number of bytes waiting for Flush.
func (w *Writer) Buffered() int { return w.bw.Buffered() }

func (w *Writer) header(t Type, n int) {
	w.hdr[0] = byte(t)
	binary.BigEndian.PutUint32(w.hdr[1:], uint32(n))
}
