package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// startFlk runs `flk up` ($FLK_BIN, else the workspace's debug build) on port 0.
func startFlk(t *testing.T, secret string) string {
	bin := os.Getenv("FLK_BIN")
	if bin == "" {
		target := os.Getenv("CARGO_TARGET_DIR")
		if target == "" {
			target = filepath.Join("..", "..", "..", "..", "target")
		}
		bin = filepath.Join(target, "debug", "flk")
	}
	cmd := exec.Command(bin, "up", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--hmac-key", secret)
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("flk up (set FLK_BIN): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`gateway listening on (http://\S+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				io.Copy(io.Discard, out)
				return
			}
		}
		close(found)
	}()
	select {
	case url, ok := <-found:
		if !ok {
			t.Fatal("flk up exited before listening")
		}
		return url
	case <-time.After(120 * time.Second):
		t.Fatal("flk up did not start")
	}
	return ""
}

func TestSubmitAgainstFlkUp(t *testing.T) {
	url := startFlk(t, "conformance-secret")
	dir := os.Getenv("FLK_SDK_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "testdata")
	}
	data, err := os.ReadFile(filepath.Join(dir, "signing_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--submit", url, "--tenant", "default", "--hmac-key", "conformance-secret"}
	for round, wantDup := range []bool{false, true} {
		var out bytes.Buffer
		if err := run(bytes.NewReader(data), &out, args); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		n := 0
		for sc := bufio.NewScanner(&out); sc.Scan(); n++ {
			var l submitLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			if (l.HTTPStatus != 200 && l.HTTPStatus != 202) || l.Outcome == nil || l.Duplicate != wantDup || len(l.PcsID) != 64 {
				t.Errorf("round %d: %s", round, sc.Text())
			}
		}
		if n != 64 {
			t.Fatalf("round %d: %d lines", round, n)
		}
	}
	// A wrong key: every answer is a 401 and the runner fails.
	var out bytes.Buffer
	bad := []string{"--submit", url, "--hmac-key", "wrong"}
	if err := run(bytes.NewReader(data), &out, bad); err == nil {
		t.Fatal("refusals not reported")
	}
	var first submitLine
	json.Unmarshal(bytes.SplitN(out.Bytes(), []byte{'\n'}, 2)[0], &first)
	if first.HTTPStatus != 401 || first.Outcome != nil {
		t.Fatalf("wrong key: %+v", first)
	}
}
