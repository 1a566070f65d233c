package flk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func seqs(es []OutboxEntry) []int64 {
	var out []int64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOutboxReplayTornTailCompaction(t *testing.T) {
	dir := t.TempDir()
	p := mustPCS(t, loadSigning(t).Vectors[0].PCS)
	signer, _ := NewHMACSigner([]byte("s"), ModeDigest)
	ob, err := OpenOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOutbox(dir); !errors.Is(err, ErrOutboxLocked) {
		t.Fatalf("second open: %v", err)
	}
	ob.CompactAfter = 10
	for i := 0; i < 25; i++ {
		p.Epoch = int64(i)
		if _, err := ob.Put(p, signer); err != nil {
			t.Fatal(err)
		}
	}
	for s := int64(1); s <= 20; s++ {
		if err := ob.Ack(s, 200); err != nil {
			t.Fatal(err)
		}
	}
	ob.Close()
	// A crash in the middle of an append leaves a torn line.
	f, _ := os.OpenFile(filepath.Join(dir, OutboxLogName), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte(`{"op":"ack","seq":21`))
	f.Close()

	ob, err = OpenOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(ob.Pending()); !equal(got, []int64{21, 22, 23, 24, 25}) {
		t.Fatalf("pending %v", got)
	}
	first, _ := ParsePCS(ob.Pending()[0].Body)
	if first.Epoch != 20 || !Verify(first, signer) {
		t.Fatalf("entry 21: %+v", first)
	}
	if s, _ := ob.PutBody([]byte("{}")); s != 26 {
		t.Fatalf("sequence numbers repeat: %d", s)
	}
	ob.Ack(22, 200)
	ob.Close()
	data, _ := os.ReadFile(filepath.Join(dir, OutboxLogName))
	if !bytes.HasSuffix(data, []byte(`{"op":"ack","seq":22,"status":200}`+"\n")) {
		t.Fatalf("log tail: %s", data[len(data)-60:])
	}
	ob, _ = OpenOutbox(dir)
	defer ob.Close()
	if got := seqs(ob.Pending()); !equal(got, []int64{21, 23, 24, 25, 26}) {
		t.Fatalf("pending after reopen %v", got)
	}
}

func TestOutboxDrainAcksAndDeadLetters(t *testing.T) {
	s := newScripted(t,
		answer{200, "", okOutcome},
		answer{400, "", map[string]any{"error": map[string]any{"code": "malformed", "message": "x"}}},
		answer{503, "0", busy},
		answer{200, "", map[string]any{"outcome": "accepted", "duplicate": true}},
	)
	c := NewClient(s.srv.URL)
	c.Retry = RetryPolicy{Base: time.Millisecond, Cap: time.Millisecond}
	dir := t.TempDir()
	ob, _ := OpenOutbox(dir)
	for i := 0; i < 3; i++ {
		ob.PutBody([]byte(`{"n":` + string(rune('0'+i)) + `}`))
	}
	rep, err := ob.Drain(context.Background(), c, nil)
	if err != nil || rep != (DrainReport{Delivered: 2, Duplicates: 1, DeadLettered: 1}) || ob.Len() != 0 {
		t.Fatalf("%+v %v len %d", rep, err, ob.Len())
	}
	dead, _ := ob.DeadLetters()
	if len(dead) != 1 || dead[0]["seq"] != float64(2) || dead[0]["http_status"] != float64(400) || dead[0]["body"] != `{"n":1}` {
		t.Fatalf("dead letters %v", dead)
	}
	ob.Close()
	ob, _ = OpenOutbox(dir)
	defer ob.Close()
	if ob.Len() != 0 {
		t.Fatal("acked entries came back")
	}
	var answerJSON map[string]any
	b, _ := json.Marshal(dead[0]["answer"])
	json.Unmarshal(b, &answerJSON)
	if answerJSON["error"] == nil {
		t.Fatal("the refusal's answer is not kept")
	}
}

// sdk/testdata/outbox/outbox.log: compaction marker, puts, an ack, a torn final line. The
// Python SDK's test replays the same file to the same state (the on-disk format is shared).
func TestOutboxSharedFixture(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdataDir(), "outbox", OutboxLogName))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, OutboxLogName), data, 0o644)
	ob, err := OpenOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	p := ob.Pending()
	// 7's ack was torn: not acknowledged.
	if len(p) != 2 || p[0].Seq != 6 || string(p[0].Body) != `{"pcs_id":"six","shard_id":"\u00e9<&>"}` ||
		p[1].Seq != 7 || string(p[1].Body) != `{"pcs_id":"seven"}` {
		t.Fatalf("pending %+v", p)
	}
	if s, _ := ob.PutBody([]byte("{}")); s != 8 {
		t.Fatalf("next seq %d", s)
	}
}
