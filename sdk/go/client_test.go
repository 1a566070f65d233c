package flk

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// scripted is an HTTP peer answering from a script, standing in for a gateway that answers
// 429/503 on demand; the integration tests use a real `flk up`.
type scripted struct {
	mu       sync.Mutex
	script   []answer
	requests []*http.Request
	bodies   [][]byte
	srv      *httptest.Server
}

type answer struct {
	status     int
	retryAfter string
	body       map[string]any
}

func newScripted(t *testing.T, script ...answer) *scripted {
	s := &scripted{script: script}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var body []byte
		if r.Body != nil {
			body = make([]byte, r.ContentLength)
			r.Body.Read(body)
		}
		s.requests = append(s.requests, r)
		s.bodies = append(s.bodies, body)
		a := answer{status: 500, body: map[string]any{}}
		if len(s.script) > 0 {
			a, s.script = s.script[0], s.script[1:]
		}
		if a.retryAfter != "" {
			w.Header().Set("retry-after", a.retryAfter)
		}
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(a.status)
		json.NewEncoder(w).Encode(a.body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

var (
	okOutcome = map[string]any{"pcs_id": "p", "outcome": "accepted", "duplicate": false}
	busy      = map[string]any{"error": map[string]any{"code": "overloaded", "message": "busy"}}
)

func TestDelayIsFullJitterWithRetryAfterFloor(t *testing.T) {
	p := RetryPolicy{Base: 100 * time.Millisecond, Cap: time.Second, MaxRetryAfter: time.Minute}
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < 10; n++ {
		for i := 0; i < 50; i++ {
			d := p.Delay(n, nil, rng)
			if d < 0 || d > time.Second || (n == 0 && d > 100*time.Millisecond) {
				t.Fatalf("attempt %d: %v", n, d)
			}
		}
	}
	ra := 2500 * time.Millisecond
	if d := p.Delay(3, &ra, rng); d < ra {
		t.Fatalf("retry-after not honoured: %v", d)
	}
	long := time.Hour
	if d := p.Delay(0, &long, rng); d != time.Minute {
		t.Fatalf("retry-after not capped: %v", d)
	}
	now := time.Date(2015, 10, 21, 7, 27, 50, 0, time.UTC)
	if d := ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now); d == nil || *d != 10*time.Second {
		t.Fatalf("http date: %v", d)
	}
	if d := ParseRetryAfter("3", now); d == nil || *d != 3*time.Second {
		t.Fatalf("seconds: %v", d)
	}
	if ParseRetryAfter("soon", now) != nil || ParseRetryAfter("", now) != nil {
		t.Fatal("garbage parsed")
	}
}

func TestClientRetriesTransientAnswers(t *testing.T) {
	s := newScripted(t, answer{503, "1", busy}, answer{429, "0", busy}, answer{200, "", okOutcome})
	c := NewClient(s.srv.URL)
	c.Tenant = "t1"
	c.Signer, _ = NewHMACSigner([]byte("s"), ModeDigest)
	c.Retry = RetryPolicy{Base: time.Millisecond, Cap: 2 * time.Millisecond, MaxAttempts: 5, MaxRetryAfter: time.Minute}
	p := mustPCS(t, loadSigning(t).Vectors[0].PCS)
	start := time.Now()
	r, err := c.Submit(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if r.HTTPStatus != 200 || r.Outcome() != "accepted" || r.Attempts != 3 {
		t.Fatalf("%v attempts %d", r, r.Attempts)
	}
	if time.Since(start) < time.Second {
		t.Fatal("Retry-After: 1 not honoured")
	}
	if len(s.requests) != 3 || s.requests[0].Header.Get("x-tenant-id") != "t1" || s.requests[0].URL.Path != "/v1/pcs/submit" {
		t.Fatalf("requests: %v", s.requests)
	}
	for _, b := range s.bodies {
		if string(b) != string(s.bodies[0]) {
			t.Fatal("retries sent different bytes")
		}
	}
	sent, _ := ParsePCS(s.bodies[0])
	if !Verify(sent, c.Signer) {
		t.Fatal("sent PCS is not signed")
	}
}

func TestClientReturnsPermanentRefusals(t *testing.T) {
	s := newScripted(t, answer{401, "", map[string]any{"error": map[string]any{"code": "signature_invalid", "message": "x"}}})
	r, err := NewClient(s.srv.URL).SubmitBody(context.Background(), []byte("{}"))
	if err != nil || r.HTTPStatus != 401 || !r.Permanent() || r.ErrorCode() != "signature_invalid" || r.Attempts != 1 {
		t.Fatalf("%v %v", r, err)
	}
}

func TestClientGivesUp(t *testing.T) {
	s := newScripted(t, answer{503, "0", busy}, answer{503, "0", busy}, answer{503, "0", busy})
	c := NewClient(s.srv.URL)
	c.Retry = RetryPolicy{Base: time.Millisecond, Cap: time.Millisecond, MaxAttempts: 3}
	_, err := c.SubmitBody(context.Background(), []byte("{}"))
	var ex *RetriesExhaustedError
	if !errors.As(err, &ex) || ex.Last == nil || ex.Last.HTTPStatus != 503 || ex.Attempts != 3 {
		t.Fatalf("%v", err)
	}
	// Nothing listening: transport errors are transient too.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	c = NewClient("http://" + addr)
	c.Retry = RetryPolicy{Base: time.Millisecond, Cap: time.Millisecond, MaxAttempts: 3}
	_, err = c.SubmitBody(context.Background(), []byte("{}"))
	if !errors.As(err, &ex) || ex.Last != nil || ex.Cause == nil {
		t.Fatalf("%v", err)
	}
}

func TestClientReads(t *testing.T) {
	s := newScripted(t, answer{200, "", okOutcome}, answer{404, "", map[string]any{}})
	c := NewClient(s.srv.URL)
	c.APIToken = "tok"
	o, err := c.GetOutcome(context.Background(), "p")
	if err != nil || o["outcome"] != "accepted" || s.requests[0].Header.Get("authorization") != "Bearer tok" {
		t.Fatalf("%v %v", o, err)
	}
	if o, err := c.GetOutcome(context.Background(), "q"); o != nil || err != nil {
		t.Fatalf("unknown: %v %v", o, err)
	}
}
