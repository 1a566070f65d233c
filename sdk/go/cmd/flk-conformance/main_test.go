package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestSigningLinesMatchTheVectors(t *testing.T) {
	dir := os.Getenv("FLK_SDK_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "testdata")
	}
	data, err := os.ReadFile(filepath.Join(dir, "signing_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			PCS struct {
				PcsID string `json:"pcs_id"`
			} `json:"pcs"`
			CanonicalPayload string `json:"canonical_payload"`
			DigestHex        string `json:"digest_sha256_hex"`
			SigHMAC          string `json:"sig_hmac_sha256_b64"`
			SigEd25519       string `json:"sig_ed25519_b64"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(bytes.NewReader(data), &out, nil); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	i := 0
	for ; sc.Scan(); i++ {
		var l signingLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		v := file.Vectors[i]
		if l.PcsID != v.PCS.PcsID || l.CanonicalPayload != v.CanonicalPayload || l.DigestHex != v.DigestHex ||
			l.SigHMAC != v.SigHMAC || l.SigEd25519 == nil || *l.SigEd25519 != v.SigEd25519 {
			t.Errorf("vector %d: %s", i, sc.Text())
		}
	}
	if i != len(file.Vectors) {
		t.Fatalf("%d lines for %d vectors", i, len(file.Vectors))
	}
}

func TestConstructionIsRefused(t *testing.T) {
	if err := run(bytes.NewReader([]byte("{}")), &bytes.Buffer{}, []string{"--construction"}); err == nil {
		t.Fatal("--construction accepted")
	}
}
