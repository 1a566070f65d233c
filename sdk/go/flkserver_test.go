package flk

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// flkServer is a real `flk up` on port 0 with a private data directory.
type flkServer struct {
	URL     string
	DataDir string
	cmd     *exec.Cmd
	mu      sync.Mutex
	lines   []string
}

var listening = regexp.MustCompile(`gateway listening on (http://\S+)`)

// flkBinary is $FLK_BIN, else the workspace's debug build ($CARGO_TARGET_DIR or ../../target).
func flkBinary(t testing.TB) string {
	if b := os.Getenv("FLK_BIN"); b != "" {
		return b
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = filepath.Join("..", "..", "target")
	}
	b := filepath.Join(target, "debug", "flk")
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("no flk binary: build it with `cargo build -p flk` and set FLK_BIN (%v)", err)
	}
	abs, _ := filepath.Abs(b)
	return abs
}

func startFlk(t testing.TB, extra ...string) *flkServer {
	t.Helper()
	dir := t.TempDir()
	s := &flkServer{DataDir: dir}
	args := append([]string{"up", "--data-dir", dir, "--listen", "127.0.0.1:0"}, extra...)
	s.cmd = exec.Command(flkBinary(t), args...)
	s.cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() { // reads stdout to the end so the pipe never fills
		sc := bufio.NewScanner(out)
		reported := false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.lines = append(s.lines, line)
			s.mu.Unlock()
			if m := listening.FindStringSubmatch(line); m != nil && !reported {
				found <- m[1]
				reported = true
			}
		}
		if !reported {
			close(found)
		}
	}()
	t.Cleanup(s.stop)
	select {
	case url, ok := <-found:
		if !ok {
			t.Fatalf("flk up exited:\n%s", s.output())
		}
		s.URL = url
	case <-time.After(120 * time.Second):
		t.Fatalf("flk up did not start:\n%s", s.output())
	}
	return s
}

func (s *flkServer) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func (s *flkServer) defaultToken(t testing.TB) string {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "default.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (s *flkServer) stop() {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}
