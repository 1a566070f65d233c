package flk

// Benchmarks (not run by `go test` without -bench): sign and verify one golden vector's PCS
// (canonical payload, round9, SHA-256, MAC or signature, base64).
//
//	go test -run '^$' -bench . -cpu 1 -count 7

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op b.N times and reports, besides ns/op (wall clock), the rate per CPU second of
// the process: the per-core figure, steadier than wall time on a shared machine.
func loop(b *testing.B, op func()) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		op()
	}
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "ops/cpu-s")
	}
}

func benchPCS(b *testing.B) (*PCS, *HMACSigner, *HMACSigner, *Ed25519Signer) {
	f := loadSigning(b)
	p := mustPCS(b, f.Vectors[0].PCS)
	d, _ := NewHMACSigner([]byte(f.HMACKey), ModeDigest)
	pl, _ := NewHMACSigner([]byte(f.HMACKey), ModePayload)
	ed, _ := NewEd25519SignerHex(f.Ed25519Hex)
	return p, d, pl, ed
}

func benchSign(b *testing.B, pick func(d, p *HMACSigner, e *Ed25519Signer) Signer) {
	p, d, pl, ed := benchPCS(b)
	s := pick(d, pl, ed)
	loop(b, func() {
		if _, err := Sign(p, s); err != nil {
			b.Fatal(err)
		}
	})
}

func benchVerify(b *testing.B, pick func(d, p *HMACSigner, e *Ed25519Signer) Signer) {
	p, d, pl, ed := benchPCS(b)
	s := pick(d, pl, ed)
	Sign(p, s)
	var v Signer = s
	if e, ok := s.(*Ed25519Signer); ok {
		v = Ed25519Verifier{PublicKey: e.PublicKey()}
	}
	loop(b, func() {
		if !Verify(p, v) {
			b.Fatal("does not verify")
		}
	})
}

func digestMode(d, _ *HMACSigner, _ *Ed25519Signer) Signer  { return d }
func payloadMode(_, p *HMACSigner, _ *Ed25519Signer) Signer { return p }
func ed25519Key(_, _ *HMACSigner, e *Ed25519Signer) Signer  { return e }

func BenchmarkSignHMACDigest(b *testing.B)    { benchSign(b, digestMode) }
func BenchmarkSignHMACPayload(b *testing.B)   { benchSign(b, payloadMode) }
func BenchmarkSignEd25519(b *testing.B)       { benchSign(b, ed25519Key) }
func BenchmarkVerifyHMACDigest(b *testing.B)  { benchVerify(b, digestMode) }
func BenchmarkVerifyHMACPayload(b *testing.B) { benchVerify(b, payloadMode) }
func BenchmarkVerifyEd25519(b *testing.B)     { benchVerify(b, ed25519Key) }
