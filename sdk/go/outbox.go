package flk

// A durable outbox for at-least-once delivery across crashes, in the same on-disk format as
// the Python SDK's:
//
//   - outbox.log: append-only JSON lines, each fsync'd before the call returns:
//     {"op":"put","seq":N,"body":"<request body>"} (write-ahead: on disk before the first
//     byte goes to the network) and {"op":"ack","seq":N} once the server answered 200/202
//     (a duplicate answer included) or refused the PCS for good;
//   - dead-letter.jsonl: PCS refused permanently (400, 401, 413, ...), with the answer,
//     fsync'd before the ack that retires them;
//   - compaction rewrites the log with the pending entries only (temp file, fsync, rename,
//     directory fsync) once enough acks have accumulated.
//
// A torn final line (a crash mid-append) is ignored and cut off on open. A crash between the
// server's answer and the ack sends the PCS again after restart; the server answers that copy
// as a duplicate, so each PCS is decided once.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
)

// File names inside an outbox directory.
const (
	OutboxLogName  = "outbox.log"
	DeadLetterName = "dead-letter.jsonl"
	outboxLockName = "outbox.lock"
)

// ErrOutboxLocked: another process holds the outbox directory.
var ErrOutboxLocked = errors.New("outbox is in use by another process")

// OutboxEntry is a pending PCS: its sequence number and the exact request body.
type OutboxEntry struct {
	Seq  int64
	Body []byte
}

type outboxRecord struct {
	Op     string          `json:"op"`
	Seq    int64           `json:"seq"`
	Body   string          `json:"body,omitempty"`
	Status int             `json:"status,omitempty"`
	Answer json.RawMessage `json:"answer,omitempty"`
}

// Outbox is the queue in one directory; one process at a time (flock).
type Outbox struct {
	dir          string
	CompactAfter int

	mu       sync.Mutex
	lock     *os.File
	log      *os.File
	pending  map[int64][]byte
	nextSeq  int64
	ackCount int
}

// OpenOutbox opens (creating if needed) the outbox in dir and replays its log.
func OpenOutbox(dir string) (*Outbox, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, outboxLockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s: %w", dir, ErrOutboxLocked)
	}
	o := &Outbox{dir: dir, CompactAfter: 1024, lock: lock, pending: map[int64][]byte{}, nextSeq: 1}
	if err := o.replay(); err != nil {
		lock.Close()
		return nil, err
	}
	path := filepath.Join(dir, OutboxLogName)
	_, statErr := os.Stat(path)
	o.log, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		lock.Close()
		return nil, err
	}
	if os.IsNotExist(statErr) {
		if err := fsyncDir(dir); err != nil {
			o.Close()
			return nil, err
		}
	}
	return o, nil
}

func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (o *Outbox) replay() error {
	path := filepath.Join(o.dir, OutboxLogName)
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	end := bytes.LastIndexByte(data, '\n') + 1 // what follows the last newline is torn
	sc := bufio.NewScanner(bytes.NewReader(data[:end]))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		var r outboxRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		switch r.Op {
		case "put":
			o.pending[r.Seq] = []byte(r.Body)
		case "ack":
			delete(o.pending, r.Seq)
			o.ackCount++
		}
		if r.Seq >= o.nextSeq {
			o.nextSeq = r.Seq + 1
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if end < len(data) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(int64(end)); err != nil {
			return err
		}
		return f.Sync()
	}
	return nil
}

func (o *Outbox) appendRecord(r outboxRecord) error {
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := o.log.Write(append(line, '\n')); err != nil {
		return err
	}
	return o.log.Sync()
}

// Close releases the outbox.
func (o *Outbox) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.log.Close()
	if e := o.lock.Close(); err == nil {
		err = e
	}
	return err
}

// PutBody durably queues an encoded, signed PCS and returns its sequence number.
func (o *Outbox) PutBody(body []byte) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	seq := o.nextSeq
	if err := o.appendRecord(outboxRecord{Op: "put", Seq: seq, Body: string(body)}); err != nil {
		return 0, err
	}
	o.nextSeq++
	o.pending[seq] = append([]byte(nil), body...)
	return seq, nil
}

// Put signs p (when signer is not nil) and queues it durably.
func (o *Outbox) Put(p *PCS, signer Signer) (int64, error) {
	if signer != nil {
		if _, err := Sign(p, signer); err != nil {
			return 0, err
		}
	}
	body, err := p.Marshal()
	if err != nil {
		return 0, err
	}
	return o.PutBody(body)
}

// Pending lists the entries not yet acknowledged, oldest first.
func (o *Outbox) Pending() []OutboxEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]OutboxEntry, 0, len(o.pending))
	for s, b := range o.pending {
		out = append(out, OutboxEntry{Seq: s, Body: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Len is the number of pending entries.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending)
}

// Ack retires seq: the server recorded its decision.
func (o *Outbox) Ack(seq int64, status int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ackLocked(seq, status)
}

func (o *Outbox) ackLocked(seq int64, status int) error {
	if _, ok := o.pending[seq]; !ok {
		return nil
	}
	if err := o.appendRecord(outboxRecord{Op: "ack", Seq: seq, Status: status}); err != nil {
		return err
	}
	delete(o.pending, seq)
	o.ackCount++
	if o.CompactAfter > 0 && o.ackCount >= o.CompactAfter {
		return o.compactLocked()
	}
	return nil
}

// DeadLetter moves seq to the dead-letter file (refused for good), then retires it.
func (o *Outbox) DeadLetter(seq int64, r *SubmitResult) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	body, ok := o.pending[seq]
	if !ok {
		return nil
	}
	answer, _ := json.Marshal(r.Body)
	line, err := json.Marshal(map[string]any{
		"seq": seq, "http_status": r.HTTPStatus, "answer": json.RawMessage(answer), "body": string(body),
	})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(o.dir, DeadLetterName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return o.ackLocked(seq, r.HTTPStatus)
}

// DeadLetters reads the dead-letter file.
func (o *Outbox) DeadLetters() ([]map[string]any, error) {
	data, err := os.ReadFile(filepath.Join(o.dir, DeadLetterName))
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Compact rewrites the log with only the pending entries (crash-safe).
func (o *Outbox) Compact() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.compactLocked()
}

func (o *Outbox) compactLocked() error {
	tmp := filepath.Join(o.dir, OutboxLogName+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	// The highest sequence number ever used survives, so numbers never repeat.
	first, _ := json.Marshal(outboxRecord{Op: "seq", Seq: o.nextSeq - 1})
	w.Write(append(first, '\n'))
	seqs := make([]int64, 0, len(o.pending))
	for s := range o.pending {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, s := range seqs {
		line, _ := json.Marshal(outboxRecord{Op: "put", Seq: s, Body: string(o.pending[s])})
		w.Write(append(line, '\n'))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	o.log.Close()
	path := filepath.Join(o.dir, OutboxLogName)
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := fsyncDir(o.dir); err != nil {
		return err
	}
	o.log, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	o.ackCount = 0
	return err
}

// DrainReport counts what Drain did.
type DrainReport struct {
	Delivered, Duplicates, DeadLettered int
}

// Drain sends every pending entry in order until the outbox is empty. Transient failures are
// retried per the client's policy; if it gives up, the error is returned and the entry stays
// pending. onResult (optional) sees every final answer before it is recorded.
func (o *Outbox) Drain(ctx context.Context, c *Client, onResult func(OutboxEntry, *SubmitResult)) (DrainReport, error) {
	var rep DrainReport
	for _, e := range o.Pending() {
		r, err := c.SubmitBody(ctx, e.Body)
		if err != nil {
			return rep, err
		}
		if onResult != nil {
			onResult(e, r)
		}
		if r.Acknowledged() {
			if err := o.Ack(e.Seq, r.HTTPStatus); err != nil {
				return rep, err
			}
			rep.Delivered++
			if r.Duplicate() {
				rep.Duplicates++
			}
		} else {
			if err := o.DeadLetter(e.Seq, r); err != nil {
				return rep, err
			}
			rep.DeadLettered++
		}
	}
	return rep, nil
}
