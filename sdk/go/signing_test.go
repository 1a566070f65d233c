package flk

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"
)

func TestSigningVectors(t *testing.T) {
	f := loadSigning(t)
	hm, err := NewHMACSigner([]byte(f.HMACKey), ModeDigest)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := NewEd25519SignerHex(f.Ed25519Hex)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.StdEncoding.EncodeToString(ed.PublicKey()); got != f.Ed25519PubB6 {
		t.Fatalf("public key %s, want %s", got, f.Ed25519PubB6)
	}
	pub, _ := base64.StdEncoding.DecodeString(f.Ed25519PubB6)
	for i, v := range f.Vectors {
		v := v
		t.Run(fmt.Sprintf("v%02d", i), func(t *testing.T) {
			p := mustPCS(t, v.PCS)
			payload, err := p.CanonicalPayload()
			if err != nil {
				t.Fatal(err)
			}
			if string(payload) != v.CanonicalPayload {
				t.Fatalf("payload\n got %s\nwant %s", payload, v.CanonicalPayload)
			}
			d := sha256.Sum256(payload)
			if hex.EncodeToString(d[:]) != v.DigestHex {
				t.Fatal("digest differs")
			}
			if p.ComputePcsID() != p.PcsID {
				t.Fatal("pcs_id differs")
			}
			sig, err := Sign(p, hm)
			if err != nil || sig != v.SigHMAC {
				t.Fatalf("hmac %s (%v), want %s", sig, err, v.SigHMAC)
			}
			if !Verify(p, hm) {
				t.Fatal("own hmac signature does not verify")
			}
			if got := base64.StdEncoding.EncodeToString(ed.SignPayload(payload)); got != v.SigEd25519 {
				t.Fatalf("ed25519 %s, want %s", got, v.SigEd25519)
			}
			p.Sig = v.SigEd25519
			if !Verify(p, Ed25519Verifier{PublicKey: pub}) || Verify(p, hm) {
				t.Fatal("ed25519 verification wrong")
			}
		})
	}
}

func TestRound9(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0.1234567885, 0.123456789}, {4e-10, 0}, {6e-10, 1e-09}, {-0.1234567885, -0.123456789},
		{0.5, 0.5}, {2.5e16, 2.5e16}, {1e300, 1e300}, {0.9999999995, 1.0}, {9.9999999995, 10},
		{5e-10, 1e-09}, {-6e-10, -1e-09}, {1e-20, 0}, {0.29149112015, 0.29149112},
	} {
		got, err := Round9(c.in)
		if err != nil || got != c.want {
			t.Errorf("Round9(%v) = %v (%v), want %v", c.in, got, err, c.want)
		}
	}
	if got, _ := Round9(-4e-10); !math.Signbit(got) || got != 0 {
		t.Errorf("Round9(-4e-10) = %v, want -0.0", got)
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := Round9(bad); err == nil {
			t.Errorf("Round9(%v) accepted", bad)
		}
	}
}

func TestFormatFloatIsPythonRepr(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0.5, "0.5"}, {1, "1.0"}, {0.0001, "0.0001"}, {1e15, "1000000000000000.0"},
		{math.Copysign(0, -1), "-0.0"}, {0, "0.0"}, {1e-05, "1e-05"}, {1.5e-07, "1.5e-07"},
		{2.5e16, "2.5e+16"}, {1e16, "1e+16"}, {9999999999999998, "9999999999999998.0"},
		{123.456, "123.456"}, {-0.00012, "-0.00012"}, {1e-100, "1e-100"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
		{5e-324, "5e-324"}, {0.1, "0.1"}, {100, "100.0"},
	} {
		if got, _ := FormatFloat(c.in); got != c.want {
			t.Errorf("FormatFloat(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestEscapeString(t *testing.T) {
	got := EscapeString("a\"\\/\n\r\t\b\f\x01\x7f\u00e9\U0001F600")
	want := `"a\"\\/\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00"`
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func TestCanonicalRefusals(t *testing.T) {
	base := SignedFields{PcsID: "x", MerkleRoot: "y", ShardID: "s"}
	for name, f := range map[string]SignedFields{
		"nan":      func() SignedFields { b := base; b.DHat = math.NaN(); return b }(),
		"inf":      func() SignedFields { b := base; b.R = math.Inf(1); return b }(),
		"epoch<0":  func() SignedFields { b := base; b.Epoch = -1; return b }(),
		"epoch>53": func() SignedFields { b := base; b.Epoch = MaxEpoch + 1; return b }(),
	} {
		if _, err := CanonicalPayload(f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParsePCS([]byte(`{"epoch": 1.5}`)); err == nil {
		t.Error("an epoch with a fraction parsed")
	}
}

func TestHMACModesAndTampering(t *testing.T) {
	f := loadSigning(t)
	p := mustPCS(t, f.Vectors[0].PCS)
	digest, _ := NewHMACSigner([]byte("k"), ModeDigest)
	payloadMode, _ := NewHMACSigner([]byte("k"), ModePayload)
	if _, err := NewHMACSigner([]byte("k"), "other"); err == nil {
		t.Fatal("unknown mode accepted")
	}
	Sign(p, payloadMode)
	if !Verify(p, payloadMode) || Verify(p, digest) {
		t.Fatal("modes not distinguished")
	}
	payload, _ := p.CanonicalPayload()
	if got := payloadMode.SignPayload(payload); !strings.EqualFold(hex.EncodeToString(got), hmacHex("k", payload)) {
		t.Fatal("payload mode is not HMAC over the payload")
	}
	p.DHat += 0.01
	if Verify(p, payloadMode) {
		t.Fatal("tampered PCS verifies")
	}
	for _, s := range []string{"", "not base64!"} {
		p.Sig = s
		if Verify(p, payloadMode) {
			t.Fatalf("sig %q verifies", s)
		}
	}
	if strings.Contains(fmt.Sprint(digest), "k") && !strings.Contains(fmt.Sprint(digest), "redacted") {
		t.Fatal("secret printed")
	}
}

func TestEd25519Strict(t *testing.T) {
	f := loadSigning(t)
	ed, _ := NewEd25519SignerHex(f.Ed25519Hex)
	payload := []byte(f.Vectors[0].CanonicalPayload)
	sig := ed.SignPayload(payload)
	v := Ed25519Verifier{PublicKey: ed.PublicKey()}
	if !v.VerifyPayload(payload, sig) {
		t.Fatal("valid signature refused")
	}
	// S + L: the same signature to a lax verifier, refused by a strict one.
	le := func(b []byte) *big.Int {
		r := make([]byte, len(b))
		for i := range b {
			r[i] = b[len(b)-1-i]
		}
		return new(big.Int).SetBytes(r)
	}
	s := new(big.Int).Add(le(sig[32:]), groupOrder)
	be := s.FillBytes(make([]byte, 32))
	bad := append([]byte(nil), sig[:32]...)
	for i := 31; i >= 0; i-- {
		bad = append(bad, be[i])
	}
	if v.VerifyPayload(payload, bad) {
		t.Fatal("non-canonical S accepted")
	}
	identity := append([]byte{1}, make([]byte, 31)...)
	if (Ed25519Verifier{PublicKey: identity}).VerifyPayload(payload, append(append([]byte(nil), identity...), make([]byte, 32)...)) {
		t.Fatal("small-order key accepted")
	}
}

func TestVerifyVectorsSignatures(t *testing.T) {
	var f verifyFile
	loadJSON(t, "verify_vectors.json", &f)
	hm, _ := NewHMACSigner([]byte(f.HMACKey), ModeDigest)
	for i, v := range f.Vectors {
		if !Verify(mustPCS(t, v.PCS), hm) {
			t.Errorf("verify vector %d: signature does not verify", i)
		}
	}
}
