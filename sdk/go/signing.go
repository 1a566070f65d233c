package flk

// Signers and verifiers (PROTOCOL.md section 2, step 5): HMAC-SHA256 over the digest (mode
// "digest", the default) or over the payload (mode "payload"), and PureEd25519 over the
// 32-byte digest, verified strictly (non-canonical S and small-order keys refused).

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"sync"
)

// HMACMode chooses what an HMAC key signs.
type HMACMode string

const (
	// ModeDigest signs SHA-256(payload) (older agents; the default).
	ModeDigest HMACMode = "digest"
	// ModePayload signs the payload bytes themselves (the later protocol revision).
	ModePayload HMACMode = "payload"
)

// Signer signs and verifies canonical payloads.
type Signer interface {
	SignPayload(payload []byte) []byte
	VerifyPayload(payload, sig []byte) bool
}

// HMACSigner is a tenant's HMAC key: the raw UTF-8 bytes of the configured secret.
type HMACSigner struct {
	key  []byte
	mode HMACMode
	pool sync.Pool // of hash.Hash: reset HMAC states keep the padded key's precomputed blocks
}

// NewHMACSigner makes an HMAC signer; mode is ModeDigest or ModePayload.
func NewHMACSigner(secret []byte, mode HMACMode) (*HMACSigner, error) {
	if mode != ModeDigest && mode != ModePayload {
		return nil, fmt.Errorf("unknown hmac mode %q (digest or payload)", mode)
	}
	s := &HMACSigner{key: append([]byte(nil), secret...), mode: mode}
	s.pool.New = func() any { return hmac.New(sha256.New, s.key) }
	return s, nil
}

// Mode is the signer's HMAC mode.
func (s *HMACSigner) Mode() HMACMode { return s.mode }

// SignPayload returns the 32-byte MAC.
func (s *HMACSigner) SignPayload(payload []byte) []byte {
	m := s.pool.Get().(hash.Hash)
	m.Reset()
	if s.mode == ModeDigest {
		d := sha256.Sum256(payload)
		m.Write(d[:])
	} else {
		m.Write(payload)
	}
	out := m.Sum(make([]byte, 0, sha256.Size))
	s.pool.Put(m)
	return out
}

// VerifyPayload compares in constant time.
func (s *HMACSigner) VerifyPayload(payload, sig []byte) bool {
	return hmac.Equal(s.SignPayload(payload), sig)
}

// String never shows the secret.
func (s *HMACSigner) String() string {
	return fmt.Sprintf("HMACSigner{mode: %s, key: <redacted>}", s.mode)
}

// Ed25519Signer signs the digest with a private key made from a 32-byte seed.
type Ed25519Signer struct{ key ed25519.PrivateKey }

// NewEd25519Signer makes a signer from a 32-byte seed.
func NewEd25519Signer(seed []byte) (*Ed25519Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("an ed25519 seed is 32 bytes")
	}
	return &Ed25519Signer{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// NewEd25519SignerHex makes a signer from 64 hex characters.
func NewEd25519SignerHex(seedHex string) (*Ed25519Signer, error) {
	seed, err := hex.DecodeString(seedHex)
	if err != nil {
		return nil, fmt.Errorf("ed25519 seed: %w", err)
	}
	return NewEd25519Signer(seed)
}

// PublicKey is the 32-byte public key (its base64 goes into the tenants file).
func (s *Ed25519Signer) PublicKey() ed25519.PublicKey {
	return s.key.Public().(ed25519.PublicKey)
}

// SignPayload signs SHA-256(payload) (PureEd25519, not Ed25519ph).
func (s *Ed25519Signer) SignPayload(payload []byte) []byte {
	d := sha256.Sum256(payload)
	return ed25519.Sign(s.key, d[:])
}

// VerifyPayload verifies with the signer's own public key.
func (s *Ed25519Signer) VerifyPayload(payload, sig []byte) bool {
	return Ed25519Verifier{PublicKey: s.PublicKey()}.VerifyPayload(payload, sig)
}

// Ed25519Verifier verifies strictly with a public key.
type Ed25519Verifier struct{ PublicKey ed25519.PublicKey }

var (
	groupOrder = func() *big.Int {
		l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
		return l
	}()
	smallOrder = func() [][]byte {
		var out [][]byte
		for _, h := range []string{
			"0100000000000000000000000000000000000000000000000000000000000000",
			"0100000000000000000000000000000000000000000000000000000000000080",
			"0000000000000000000000000000000000000000000000000000000000000000",
			"0000000000000000000000000000000000000000000000000000000000000080",
			"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
			"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
			"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
			"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
			"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
			"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
			"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
			"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
			"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
			"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		} {
			b, _ := hex.DecodeString(h)
			out = append(out, b)
		}
		return out
	}()
)

// SignPayload is not possible with a public key; it returns nil.
func (v Ed25519Verifier) SignPayload([]byte) []byte { return nil }

// VerifyPayload checks a PureEd25519 signature over SHA-256(payload), strictly.
func (v Ed25519Verifier) VerifyPayload(payload, sig []byte) bool {
	if len(v.PublicKey) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	for _, p := range smallOrder {
		if bytes.Equal(v.PublicKey, p) {
			return false
		}
	}
	s := make([]byte, 32)
	for i := range s { // little-endian to big-endian
		s[i] = sig[63-i]
	}
	if new(big.Int).SetBytes(s).Cmp(groupOrder) >= 0 {
		return false
	}
	d := sha256.Sum256(payload)
	return ed25519.Verify(v.PublicKey, d[:], sig)
}

// Sign computes p's signature with signer and stores it (base64) in p.Sig.
func Sign(p *PCS, signer Signer) (string, error) {
	payload, err := p.CanonicalPayload()
	if err != nil {
		return "", err
	}
	p.Sig = base64.StdEncoding.EncodeToString(signer.SignPayload(payload))
	return p.Sig, nil
}

// Verify reports whether p.Sig is a valid signature of p (absent or undecodable: false).
func Verify(p *PCS, v Signer) bool {
	if p.Sig == "" {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(p.Sig)
	if err != nil {
		return false
	}
	payload, err := p.CanonicalPayload()
	if err != nil {
		return false
	}
	return v.VerifyPayload(payload, sig)
}
