package flk

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// testdataDir is sdk/testdata (copies of the shared golden vectors), or $FLK_SDK_TESTDATA.
func testdataDir() string {
	if d := os.Getenv("FLK_SDK_TESTDATA"); d != "" {
		return d
	}
	return filepath.Join("..", "testdata")
}

type signingVector struct {
	PCS              json.RawMessage `json:"pcs"`
	CanonicalPayload string          `json:"canonical_payload"`
	DigestHex        string          `json:"digest_sha256_hex"`
	SigHMAC          string          `json:"sig_hmac_sha256_b64"`
	SigEd25519       string          `json:"sig_ed25519_b64"`
}

type signingFile struct {
	HMACKey      string          `json:"hmac_key_utf8"`
	Ed25519Hex   string          `json:"ed25519_seed_hex"`
	Ed25519PubB6 string          `json:"ed25519_public_key_b64"`
	Vectors      []signingVector `json:"vectors"`
}

type verifyVector struct {
	PCS    json.RawMessage `json:"pcs"`
	Expect struct {
		HTTPStatus int    `json:"http_status"`
		Outcome    string `json:"outcome"`
		ReasonCode string `json:"reason_code"`
	} `json:"expect"`
}

type verifyFile struct {
	HMACKey string         `json:"hmac_key_utf8"`
	Vectors []verifyVector `json:"vectors"`
}

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func loadSigning(t testing.TB) signingFile {
	var f signingFile
	loadJSON(t, "signing_vectors.json", &f)
	if len(f.Vectors) == 0 {
		t.Fatal("no signing vectors")
	}
	return f
}

func mustPCS(t testing.TB, raw json.RawMessage) *PCS {
	t.Helper()
	p, err := ParsePCS(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
