package flk

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The agent side of TestOutboxSurvivesSIGKILL runs in a child process: this test binary
// re-executed with FLK_GO_OUTBOX_AGENT set (see TestMain).
const agentEnv = "FLK_GO_OUTBOX_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) != "" {
		if err := outboxAgent(); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type agentLine struct {
	Seq        int64  `json:"seq"`
	PcsID      string `json:"pcs_id"`
	HTTPStatus int    `json:"http_status"`
	Duplicate  bool   `json:"duplicate"`
	Outcome    string `json:"outcome"`
	Hang       bool   `json:"hang,omitempty"`
	Done       int    `json:"done,omitempty"`
	Queued     int    `json:"queued,omitempty"`
}

// outboxAgent queues (FLK_AGENT_ENQUEUE: a JSON list of PCS) and drains an outbox, printing
// each answer before recording it; with FLK_AGENT_HANG_AFTER=K it stops for good after the
// K-th answer, before recording it.
func outboxAgent() error {
	ob, err := OpenOutbox(os.Getenv("FLK_AGENT_DIR"))
	if err != nil {
		return err
	}
	defer ob.Close()
	signer, _ := NewHMACSigner([]byte(os.Getenv("FLK_AGENT_SECRET")), ModeDigest)
	out := json.NewEncoder(os.Stdout)
	if path := os.Getenv("FLK_AGENT_ENQUEUE"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var list []json.RawMessage
		if err := json.Unmarshal(data, &list); err != nil {
			return err
		}
		for _, raw := range list {
			p, err := ParsePCS(raw)
			if err != nil {
				return err
			}
			if _, err := ob.Put(p, signer); err != nil {
				return err
			}
		}
		out.Encode(agentLine{Queued: ob.Len()})
	}
	hangAfter, _ := strconv.Atoi(os.Getenv("FLK_AGENT_HANG_AFTER"))
	c := NewClient(os.Getenv("FLK_AGENT_URL"))
	c.Retry.MaxAttempts = 0
	answers := 0
	rep, err := ob.Drain(context.Background(), c, func(e OutboxEntry, r *SubmitResult) {
		answers++
		p, _ := ParsePCS(e.Body)
		out.Encode(agentLine{Seq: e.Seq, PcsID: p.PcsID, HTTPStatus: r.HTTPStatus, Duplicate: r.Duplicate(), Outcome: r.Outcome()})
		if answers == hangAfter {
			out.Encode(agentLine{Hang: true})
			for {
				time.Sleep(time.Hour) // until SIGKILL
			}
		}
	})
	if err != nil {
		return err
	}
	return out.Encode(agentLine{Done: rep.Delivered})
}

// runAgent runs the agent and SIGKILLs it as soon as killWhen holds; nil: runs to the end.
func runAgent(t *testing.T, env []string, killWhen func([]agentLine) bool) []agentLine {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), agentEnv+"=1"), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []agentLine
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		var l agentLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("agent line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
		if killWhen != nil && killWhen(lines) {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
	}
	err = cmd.Wait()
	if killWhen != nil && !killed {
		t.Fatalf("agent ended before the kill point: %v", err)
	}
	if killWhen == nil && err != nil {
		t.Fatalf("agent: %v", err)
	}
	return lines
}

// TestOutboxSurvivesSIGKILL: an agent killed mid-send delivers everything after restart, and
// each PCS is decided once by a real `flk up` (later copies answered as duplicates).
func TestOutboxSurvivesSIGKILL(t *testing.T) {
	secret := "sdk-go-crash-" + randomHex(8)
	srv := startFlk(t, "--hmac-key", secret)
	dir := t.TempDir()
	f := loadSigning(t)
	var items []*PCS
	for i, v := range f.Vectors {
		p := mustPCS(t, v.PCS)
		p.ShardID = fmt.Sprintf("go-crash-test-%d", i)
		p.PcsID = p.ComputePcsID()
		items = append(items, p)
	}
	queue := filepath.Join(dir, "pcs.json")
	data, _ := json.Marshal(items)
	if err := os.WriteFile(queue, data, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"FLK_AGENT_DIR=" + filepath.Join(dir, "outbox"), "FLK_AGENT_URL=" + srv.URL, "FLK_AGENT_SECRET=" + secret}

	// 1. Killed after the server decided the 10th PCS, before the agent recorded it.
	first := runAgent(t, append(base, "FLK_AGENT_ENQUEUE="+queue, "FLK_AGENT_HANG_AFTER=10"),
		func(ls []agentLine) bool { return ls[len(ls)-1].Hang })
	if first[0].Queued != len(items) || len(first) != 12 {
		t.Fatalf("first run: %+v", first)
	}
	answers1 := first[1:11]
	hung := answers1[9]
	// 2. Killed again at an arbitrary moment of sending.
	second := runAgent(t, base, func(ls []agentLine) bool { return len(ls) >= 20 })
	if second[0].PcsID != hung.PcsID || !second[0].Duplicate || second[0].Outcome != hung.Outcome {
		t.Fatalf("the PCS decided before the crash was not answered as a duplicate: %+v vs %+v", second[0], hung)
	}
	// 3. Runs to the end.
	third := runAgent(t, base, nil)
	if last := third[len(third)-1]; last.Done != len(third)-1 {
		t.Fatalf("third run: %+v", last)
	}
	all := append(append(append([]agentLine{}, answers1...), second...), third[:len(third)-1]...)
	fresh := map[string]int{}
	seen := map[string]bool{}
	for _, a := range all {
		seen[a.PcsID] = true
		if !a.Duplicate {
			fresh[a.PcsID]++
		}
		if a.HTTPStatus != 200 && a.HTTPStatus != 202 {
			t.Errorf("answer %+v", a)
		}
	}
	for _, a := range answers1[:9] {
		for _, b := range second {
			if a.PcsID == b.PcsID {
				t.Errorf("%s was acknowledged before the crash and sent again", a.PcsID)
			}
		}
	}
	c := NewClient(srv.URL)
	c.Signer, _ = NewHMACSigner([]byte(secret), ModeDigest)
	c.APIToken = srv.defaultToken(t)
	for _, p := range items {
		if !seen[p.PcsID] || fresh[p.PcsID] > 1 {
			t.Errorf("%s: seen=%v, decided %d times", p.PcsID, seen[p.PcsID], fresh[p.PcsID])
		}
		r, err := c.Submit(context.Background(), p)
		if err != nil || !r.Duplicate() {
			t.Errorf("%s again: %v %v", p.PcsID, r, err)
		}
		if stored, err := c.GetOutcome(context.Background(), p.PcsID); err != nil || stored == nil || stored["outcome"] != r.Outcome() {
			t.Errorf("%s stored: %v %v", p.PcsID, stored, err)
		}
	}
}
