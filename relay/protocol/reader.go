package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// initialPayloadBuf is the payload buffer a Reader starts with: room for a
// WireGuard packet at a 1500-byte MTU. Most connections never need more, and
// a relay with thousands of clients should not hold 64 KiB for each of them.
const initialPayloadBuf = 2048

// Reader reads frames from a byte stream. It is not safe for concurrent use.
type Reader struct {
	br      io.Reader
	hdr     [HeaderLen]byte
	buf     []byte // payload of the last frame; grows on demand up to max
	max     int
	readLen int64
	// unchecked counts the frames read since DeadlineCheckDue last said
	// to look at the clock.
	unchecked int
}

// NewReader reads frames from br, allowing payloads up to MaxPayloadLen.
// A session passes a bufio.Reader, so that a burst of frames costs few system
// calls. A handshake may pass the bare connection: the Reader then reads
// exactly one frame's bytes and nothing beyond, so the session's buffered
// reader can take over without losing what the peer sent next, and a
// connection that never authenticates holds no read buffer.
func NewReader(br io.Reader) *Reader {
	return &Reader{br: br, max: MaxPayloadLen}
}

// SetMaxPayload lowers (or restores) the largest payload the Reader accepts;
// n is clamped to MaxPayloadLen.
func (r *Reader) SetMaxPayload(n int) {
	r.max = min(n, MaxPayloadLen)
}

// nextBuffered reports whether the whole next frame is already in the
// stream's bufio.Reader, so that ReadFrame will not read the stream.
func (r *Reader) nextBuffered() bool {
	b, ok := r.br.(*bufio.Reader)
	if !ok || b.Buffered() < HeaderLen {
		return false
	}
	hdr, err := b.Peek(HeaderLen) // within what is buffered: never reads
	if err != nil {
		return false
	}
	return uint64(b.Buffered()) >= HeaderLen+uint64(binary.BigEndian.Uint32(hdr[1:]))
}

// BytesRead is the number of bytes of complete frames read so far.
func (r *Reader) BytesRead() int64 { return r.readLen }

// ReadFrame reads the next frame. The payload aliases the Reader's buffer and
// is valid only until the next call, which is what keeps the hot path free of
// allocations.
//
// A clean end of stream between frames is io.EOF; one inside a frame is
// io.ErrUnexpectedEOF; a declared length above the limit is ErrFrameTooLarge
// and nothing of the payload is read.
func (r *Reader) ReadFrame() (Type, []byte, error) {
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("read frame header: %w", err)
		}
		return 0, nil, err // io.EOF at a frame boundary stays io.EOF
	}
	t := Type(r.hdr[0])
	n := binary.BigEndian.Uint32(r.hdr[1:])
	if uint64(n) > uint64(r.max) {
		return t, nil, fmt.Errorf("%v frame of %d bytes (limit %d): %w", t, n, r.max, ErrFrameTooLarge)
	}
	if int(n) > cap(r.buf) {
		// Never more than the limit: a handshake Reader (limit
		// MaxHandshakePayloadLen) then holds a handshake's worth.
		r.buf = make([]byte, max(int(n), min(initialPayloadBuf, r.max)))
	}
	p := r.buf[:n]
	if _, err := io.ReadFull(r.br, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, fmt.Errorf("read %v payload of %d bytes: %w", t, n, err)
	}
	r.readLen += int64(HeaderLen) + int64(n)
	return t, p, nil
}

// deadlineCheckEvery bounds the frames read between two looks at the clock
// by DeadlineCheckDue.
const deadlineCheckEvery = 64

// DeadlineCheckDue reports whether a read loop should look at the clock to
// refresh its read deadline before the next ReadFrame: when that read may
// block on the stream (the next frame is not all buffered), and at least
// every deadlineCheckEvery frames. Reading the time for every frame is a
// good part of a relayed packet's cost, and a deadline matters only when a
// read blocks.
func (r *Reader) DeadlineCheckDue() bool {
	r.unchecked++
	if r.unchecked < deadlineCheckEvery && r.nextBuffered() {
		return false
	}
	r.unchecked = 0
	return true
}
