package protocol

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// MaxBatchFrames and MaxBatchBytes bound the batch a connection's write
// loop takes from its queue for one BatchWriter.Flush: a frame takes two
// iovecs (header, datagram), so 512 frames are 1024, the kernel's limit
// for one writev; and 256 KiB leaves at 1 Gbit/s in 2 ms, the granularity
// at which producers waiting for room in the queue get it back.
const (
	MaxBatchFrames = 512
	MaxBatchBytes  = 256 << 10
)

// BatchWriter writes a batch of frames with as few system calls as the
// connection allows. On a plain TCP connection the whole batch leaves in
// one writev (net.Buffers): the headers from a small arena, the datagrams
// straight from the caller's buffers, uncopied. Anything else (TLS, a pipe
// in tests) gets the frames copied into a bufio.Writer flushed once per
// batch, since net.Buffers would make each buffer a Write of its own (a TLS
// record each). Payloads passed to Add* must stay unchanged until Flush
// returns. It is not safe for concurrent use.
type BatchWriter struct {
	w        io.Writer
	vectored bool
	bufSize  int
	bw       *bufio.Writer // when not vectored; made on demand

	hdrs   []byte   // headers (and keys) of the batch, back to back
	frames []frame  // the batch, in order
	iov    [][]byte // scratch for building the writev
}

// frame is one frame of a batch: its header's place in hdrs, and its
// payload (the part after the header and key).
type frame struct {
	hdrOff, hdrLen int
	payload        []byte
}

// NewBatchWriter writes to conn; bufSize sizes the copy buffer used when
// conn cannot take vectored writes.
func NewBatchWriter(conn io.Writer, bufSize int) *BatchWriter {
	b := &BatchWriter{w: conn, bufSize: bufSize}
	switch conn.(type) {
	case *net.TCPConn, *net.UnixConn:
		b.vectored = true
	}
	return b
}

// AddFrame adds a frame with the given payload to the batch.
func (b *BatchWriter) AddFrame(t Type, payload []byte) error {
	if len(payload) > MaxPayloadLen {
		return fmt.Errorf("write %v frame of %d bytes: %w", t, len(payload), ErrFrameTooLarge)
	}
	off := len(b.hdrs)
	b.hdrs = binary.BigEndian.AppendUint32(append(b.hdrs, byte(t)), uint32(len(payload)))
	b.frames = append(b.frames, frame{hdrOff: off, hdrLen: HeaderLen, payload: payload})
	return nil
}

// AddPacket adds a SendPacket or RecvPacket frame: the peer's key, then the
// datagram.
func (b *BatchWriter) AddPacket(t Type, key wgtypes.Key, pkt []byte) error {
	if len(pkt) > MaxPacketLen {
		return fmt.Errorf("write %v of %d bytes (limit %d): %w", t, len(pkt), MaxPacketLen, ErrFrameTooLarge)
	}
	off := len(b.hdrs)
	b.hdrs = binary.BigEndian.AppendUint32(append(b.hdrs, byte(t)), uint32(KeyLen+len(pkt)))
	b.hdrs = append(b.hdrs, key[:]...)
	b.frames = append(b.frames, frame{hdrOff: off, hdrLen: HeaderLen + KeyLen, payload: pkt})
	return nil
}

// Flush writes the batch out and starts a new one; the payloads are free
// again once it returns, whether or not it failed.
func (b *BatchWriter) Flush() error {
	defer b.Reset()
	if len(b.frames) == 0 {
		return nil
	}
	if !b.vectored {
		if b.bw == nil {
			b.bw = bufio.NewWriterSize(b.w, b.bufSize)
		}
		for _, f := range b.frames {
			b.bw.Write(b.hdrs[f.hdrOff : f.hdrOff+f.hdrLen])
			b.bw.Write(f.payload)
		}
		return b.bw.Flush() // a failed Write is sticky and reported here
	}
	iov := b.iov[:0]
	for _, f := range b.frames {
		iov = append(iov, b.hdrs[f.hdrOff:f.hdrOff+f.hdrLen])
		if len(f.payload) > 0 {
			iov = append(iov, f.payload)
		}
	}
	b.iov = iov
	bufs := net.Buffers(iov) // WriteTo consumes its receiver: iov stays ours
	_, err := bufs.WriteTo(b.w)
	return err
}

// Reset discards the batch unwritten and lets go of its payloads: what a
// connection whose write failed does instead of Flush.
func (b *BatchWriter) Reset() {
	clear(b.frames) // drop references to the caller's payloads
	b.frames = b.frames[:0]
	b.hdrs = b.hdrs[:0]
	clear(b.iov)
}

// Idle lets go of the memory that batches use (header arena, iovecs, copy
// buffer); the next batch allocates it again. A connection calls it when
// it has gone quiet, so that a relay's thousands of idle sessions hold no
// more than their read buffers. Call it only between batches.
func (b *BatchWriter) Idle() {
	b.hdrs, b.frames, b.iov, b.bw = nil, nil, nil, nil
}
