package flk

// REST client for FLK's gateway (PROTOCOL.md section 5). Transient answers (429, 5xx other
// than 501, transport errors) are retried with exponential backoff and full jitter, never
// sooner than the server's Retry-After; every other answer is returned as a SubmitResult.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RetryPolicy is exponential backoff with full jitter: retry n waits U(0, min(Cap, Base*2^n)),
// and at least the server's Retry-After (capped at MaxRetryAfter).
type RetryPolicy struct {
	Base          time.Duration
	Cap           time.Duration
	MaxAttempts   int // 0: retry for ever (the outbox's choice)
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy: 50 ms base, 10 s cap, 8 attempts, Retry-After honoured up to 5 minutes.
var DefaultRetryPolicy = RetryPolicy{Base: 50 * time.Millisecond, Cap: 10 * time.Second, MaxAttempts: 8, MaxRetryAfter: 5 * time.Minute}

// Delay is the wait before retry number attempt (0-based).
func (p RetryPolicy) Delay(attempt int, retryAfter *time.Duration, rng *rand.Rand) time.Duration {
	ceiling := p.Cap
	if attempt < 62 {
		if b := p.Base << uint(attempt); b > 0 && b < ceiling {
			ceiling = b
		}
	}
	d := time.Duration(rng.Int63n(int64(ceiling) + 1))
	if retryAfter != nil {
		ra := *retryAfter
		if p.MaxRetryAfter > 0 && ra > p.MaxRetryAfter {
			ra = p.MaxRetryAfter
		}
		if ra > d {
			d = ra
		}
	}
	return d
}

// ParseRetryAfter reads a Retry-After header (delta-seconds or an HTTP date).
func ParseRetryAfter(v string, now time.Time) *time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d := time.Duration(n) * time.Second
		return &d
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return &d
	}
	return nil
}

// IsTransient reports whether an HTTP status is worth retrying.
func IsTransient(status int) bool {
	switch status {
	case 408, 425, 429, 500, 502, 503, 504:
		return true
	}
	return false
}

// SubmitResult is one HTTP answer to a submission.
type SubmitResult struct {
	HTTPStatus int
	Body       map[string]any
	RetryAfter *time.Duration
	Attempts   int
}

// Acknowledged: the server recorded a decision (200 accepted, 202 escalated or rejected).
func (r *SubmitResult) Acknowledged() bool { return r.HTTPStatus == 200 || r.HTTPStatus == 202 }

// Transient: the same bytes may succeed later.
func (r *SubmitResult) Transient() bool { return IsTransient(r.HTTPStatus) }

// Permanent: refused for good (400, 401, 413, ...).
func (r *SubmitResult) Permanent() bool { return !r.Acknowledged() && !r.Transient() }

// Outcome is accepted, escalated or rejected ("" for an error answer).
func (r *SubmitResult) Outcome() string { s, _ := r.Body["outcome"].(string); return s }

// Duplicate is true when the answer is a stored outcome.
func (r *SubmitResult) Duplicate() bool { d, _ := r.Body["duplicate"].(bool); return d }

// ErrorCode is the error body's code ("" for an outcome).
func (r *SubmitResult) ErrorCode() string {
	e, _ := r.Body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// String is the status and the answer's body.
func (r *SubmitResult) String() string {
	b, _ := json.Marshal(r.Body)
	return fmt.Sprintf("http %d %s", r.HTTPStatus, b)
}

// RetriesExhaustedError: transient failures outlasted the policy. Last is the final HTTP
// answer, if there was one.
type RetriesExhaustedError struct {
	Attempts int
	Last     *SubmitResult
	Cause    error
}

func (e *RetriesExhaustedError) Error() string {
	if e.Last != nil {
		return fmt.Sprintf("gave up after %d attempts (http %d)", e.Attempts, e.Last.HTTPStatus)
	}
	return fmt.Sprintf("gave up after %d attempts (%v)", e.Attempts, e.Cause)
}

func (e *RetriesExhaustedError) Unwrap() error { return e.Cause }

// ReadError: a read was refused with Status and the server's error body.
type ReadError struct {
	Status int
	Body   map[string]any
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("read refused with http %d: %v", e.Status, e.Body["error"])
}

// Client talks to one gateway. It is safe for concurrent use.
type Client struct {
	BaseURL  string
	Tenant   string
	Signer   Signer // optional: signs each PCS before it is sent
	APIToken string // for reads (Authorization: Bearer)
	Retry    RetryPolicy
	HTTP     *http.Client

	mu  sync.Mutex
	rng *rand.Rand
}

// NewClient makes a client for the default tenant with DefaultRetryPolicy.
func NewClient(baseURL string) *Client {
	return &Client{
		BaseURL: strings.TrimRight(baseURL, "/"),
		Tenant:  "default",
		Retry:   DefaultRetryPolicy,
		HTTP:    &http.Client{Timeout: 10 * time.Second},
		rng:     rand.New(rand.NewSource(time.Now().UnixNano())),
	}
}

func (c *Client) delay(attempt int, ra *time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rng == nil {
		c.rng = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	return c.Retry.Delay(attempt, ra, c.rng)
}

func decodeBody(data []byte) map[string]any {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return map[string]any{"error": map[string]any{"code": "non_json_answer", "message": string(data)}}
	}
	return m
}

// SubmitBodyOnce sends an encoded, signed PCS once, without retrying.
func (c *Client) SubmitBodyOnce(ctx context.Context, body []byte) (*SubmitResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/v1/pcs/submit", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-tenant-id", c.Tenant)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &SubmitResult{
		HTTPStatus: resp.StatusCode,
		Body:       decodeBody(data),
		RetryAfter: ParseRetryAfter(resp.Header.Get("retry-after"), time.Now()),
		Attempts:   1,
	}, nil
}

// SubmitBody sends an encoded, signed PCS, retrying transient failures per c.Retry.
func (c *Client) SubmitBody(ctx context.Context, body []byte) (*SubmitResult, error) {
	var last *SubmitResult
	for attempt := 0; ; {
		r, err := c.SubmitBodyOnce(ctx, body)
		var ra *time.Duration
		if err == nil {
			r.Attempts = attempt + 1
			if !r.Transient() {
				return r, nil
			}
			last, ra = r, r.RetryAfter
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		attempt++
		if c.Retry.MaxAttempts > 0 && attempt >= c.Retry.MaxAttempts {
			return nil, &RetriesExhaustedError{Attempts: attempt, Last: last, Cause: err}
		}
		t := time.NewTimer(c.delay(attempt-1, ra))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Prepare signs p (when the client has a signer) and encodes it as a request body.
func (c *Client) Prepare(p *PCS) ([]byte, error) {
	if c.Signer != nil {
		if _, err := Sign(p, c.Signer); err != nil {
			return nil, err
		}
	}
	return p.Marshal()
}

// Submit signs (when the client has a signer) and submits p with retries.
func (c *Client) Submit(ctx context.Context, p *PCS) (*SubmitResult, error) {
	body, err := c.Prepare(p)
	if err != nil {
		return nil, err
	}
	return c.SubmitBody(ctx, body)
}

func (c *Client) read(ctx context.Context, path string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("x-tenant-id", c.Tenant)
	if c.APIToken != "" {
		req.Header.Set("authorization", "Bearer "+c.APIToken)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	body := decodeBody(data)
	if resp.StatusCode != http.StatusOK {
		return nil, &ReadError{Status: resp.StatusCode, Body: body}
	}
	return body, nil
}

// GetOutcome reads the stored outcome of pcsID for the client's tenant (nil, nil if unknown).
func (c *Client) GetOutcome(ctx context.Context, pcsID string) (map[string]any, error) {
	return c.read(ctx, "/v1/pcs/"+url.PathEscape(pcsID))
}

// GetProof reads the audit proof bundle of pcsID (nil, nil if not logged yet).
func (c *Client) GetProof(ctx context.Context, pcsID string) (map[string]any, error) {
	return c.read(ctx, "/v1/audit/proof/"+url.PathEscape(pcsID))
}
