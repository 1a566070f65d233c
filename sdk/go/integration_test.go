package flk

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestFlkUp runs every signing and verify vector through a real `flk up --hmac-key SECRET`.
func TestFlkUp(t *testing.T) {
	secret := "sdk-go-" + randomHex(8)
	srv := startFlk(t, "--hmac-key", secret)
	ctx := context.Background()
	signer, _ := NewHMACSigner([]byte(secret), ModeDigest)
	c := NewClient(srv.URL)
	c.Signer, c.APIToken = signer, srv.defaultToken(t)

	t.Run("verify vectors decide as expected", func(t *testing.T) {
		var f verifyFile
		loadJSON(t, "verify_vectors.json", &f)
		for i, v := range f.Vectors {
			r, err := c.Submit(ctx, mustPCS(t, v.PCS))
			if err != nil {
				t.Fatal(err)
			}
			reason, _ := r.Body["reason_code"].(string)
			if r.HTTPStatus != v.Expect.HTTPStatus || r.Outcome() != v.Expect.Outcome || reason != v.Expect.ReasonCode || r.Duplicate() {
				t.Errorf("vector %d: %d %s %s dup=%v, want %d %s %s", i, r.HTTPStatus, r.Outcome(), reason,
					r.Duplicate(), v.Expect.HTTPStatus, v.Expect.Outcome, v.Expect.ReasonCode)
			}
		}
	})

	t.Run("signing vectors decided once", func(t *testing.T) {
		f := loadSigning(t)
		first := make([]*SubmitResult, len(f.Vectors))
		for i, v := range f.Vectors {
			r, err := c.Submit(ctx, mustPCS(t, v.PCS))
			if err != nil {
				t.Fatal(err)
			}
			if !r.Acknowledged() || r.Duplicate() {
				t.Fatalf("vector %d: %d %v", i, r.HTTPStatus, r.Body)
			}
			first[i] = r
		}
		var r *SubmitResult
		var err error
		for i, v := range f.Vectors {
			p := mustPCS(t, v.PCS)
			r, err = c.Submit(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if r.HTTPStatus != first[i].HTTPStatus || r.Outcome() != first[i].Outcome() || !r.Duplicate() {
				t.Errorf("vector %d again: %d %s dup=%v", i, r.HTTPStatus, r.Outcome(), r.Duplicate())
			}
			stored, err := c.GetOutcome(ctx, p.PcsID)
			if err != nil || stored == nil || stored["outcome"] != first[i].Outcome() {
				t.Errorf("vector %d stored: %v %v", i, stored, err)
			}
		}
		// The audit log records every decision off the request path: the proof appears.
		some := mustPCS(t, f.Vectors[5].PCS).PcsID
		var proof map[string]any
		for deadline := time.Now().Add(60 * time.Second); proof == nil; time.Sleep(50 * time.Millisecond) {
			if proof, err = c.GetProof(ctx, some); err != nil || time.Now().After(deadline) {
				t.Fatalf("no proof for %s: %v", some, err)
			}
		}
		entry, _ := base64.StdEncoding.DecodeString(fmt.Sprint(proof["entry"]))
		if !strings.Contains(string(entry), some) {
			t.Fatalf("proof entry %q does not name %s", entry, some)
		}
		// A tampered copy is refused (401), never answered from the dedup store.
		p := mustPCS(t, f.Vectors[0].PCS)
		Sign(p, signer)
		p.Epoch++
		body, _ := p.Marshal()
		r, err = c.SubmitBody(ctx, body)
		if err != nil || r.HTTPStatus != 401 || r.ErrorCode() != "signature_invalid" {
			t.Fatalf("tampered: %v %v", r, err)
		}
		anon := NewClient(srv.URL)
		_, err = anon.GetOutcome(ctx, p.PcsID)
		var re *ReadError
		if !errors.As(err, &re) || re.Status != 401 {
			t.Fatalf("read without a token: %v", err)
		}
	})
}

// TestFlkUpSigningModes: a tenant holding HMAC digest, HMAC payload and Ed25519 keys accepts
// each mode and refuses a key used in the wrong mode.
func TestFlkUpSigningModes(t *testing.T) {
	digestSecret, payloadSecret, token := "d-"+randomHex(8), "p-"+randomHex(8), "flk_"+randomHex(16)
	seed := make([]byte, 32)
	rand.Read(seed)
	ed, _ := NewEd25519Signer(seed)
	tokenHash := sha256.Sum256([]byte(token))
	tenants := filepath.Join(t.TempDir(), "tenants.toml")
	doc := fmt.Sprintf(`[[tenant]]
id = "agents"

[[tenant.keys]]
id = "h-digest"
algorithm = "hmac"
mode = "digest"
secret = %q

[[tenant.keys]]
id = "h-payload"
algorithm = "hmac"
mode = "payload"
secret = %q

[[tenant.keys]]
id = "e-1"
algorithm = "ed25519"
public_key = %q

[[tenant.api_tokens]]
id = "reader"
sha256 = %q
`, digestSecret, payloadSecret, base64.StdEncoding.EncodeToString(ed.PublicKey()), hex.EncodeToString(tokenHash[:]))
	if err := os.WriteFile(tenants, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startFlk(t, "--tenants", tenants)
	ctx := context.Background()
	digest, _ := NewHMACSigner([]byte(digestSecret), ModeDigest)
	payload, _ := NewHMACSigner([]byte(payloadSecret), ModePayload)
	signers := []Signer{digest, payload, ed}
	c := NewClient(srv.URL)
	c.Tenant, c.APIToken = "agents", token
	f := loadSigning(t)
	for i, v := range f.Vectors {
		c.Signer = signers[i%3]
		p := mustPCS(t, v.PCS)
		r, err := c.Submit(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Acknowledged() || r.Duplicate() {
			t.Fatalf("vector %d with %T: %d %v", i, c.Signer, r.HTTPStatus, r.Body)
		}
		stored, err := c.GetOutcome(ctx, p.PcsID)
		if err != nil || stored == nil || stored["tenant_id"] != "agents" {
			t.Fatalf("vector %d stored: %v %v", i, stored, err)
		}
	}
	wrongDigest, _ := NewHMACSigner([]byte(payloadSecret), ModeDigest)
	wrongPayload, _ := NewHMACSigner([]byte(digestSecret), ModePayload)
	stranger, _ := NewEd25519Signer(make([]byte, 32))
	for _, s := range []Signer{wrongDigest, wrongPayload, stranger} {
		c.Signer = s
		r, err := c.Submit(ctx, mustPCS(t, f.Vectors[0].PCS))
		if err != nil || r.HTTPStatus != 401 || r.ErrorCode() != "signature_invalid" {
			t.Errorf("%v: %v %v", s, r, err)
		}
	}
}
