// Command flk-conformance is the Go SDK's conformance runner, the same interface in every FLK
// SDK: it reads a vector file in the format of signing_vectors.json on standard input and
// writes one JSON line per vector (pcs_id, canonical_payload, digest_sha256_hex,
// sig_hmac_sha256_b64 in digest mode with hmac_key_utf8, sig_ed25519_b64 with
// ed25519_seed_hex), computed from each vector's pcs alone.
//
// With --submit URL --tenant ID --hmac-key SECRET it signs and submits every vector's PCS
// through the SDK's client instead and prints pcs_id, http_status, outcome and duplicate per
// answer; the exit status is 1 if any answer was not a recorded decision (200/202).
// --construction (building PCS from raw points) is not implemented by the Go SDK.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	flk "github.com/flk-dev/flk/sdk/go"
)

type vectorFile struct {
	HMACKey    string            `json:"hmac_key_utf8"`
	Ed25519Hex string            `json:"ed25519_seed_hex"`
	Vectors    []json.RawMessage `json:"vectors"`
}

type signingLine struct {
	PcsID            string  `json:"pcs_id"`
	CanonicalPayload string  `json:"canonical_payload"`
	DigestHex        string  `json:"digest_sha256_hex"`
	SigHMAC          string  `json:"sig_hmac_sha256_b64"`
	SigEd25519       *string `json:"sig_ed25519_b64"`
}

type submitLine struct {
	PcsID      string  `json:"pcs_id"`
	HTTPStatus int     `json:"http_status"`
	Outcome    *string `json:"outcome"`
	Duplicate  bool    `json:"duplicate"`
}

func pcsOf(raw json.RawMessage) (*flk.PCS, error) {
	var v struct {
		PCS json.RawMessage `json:"pcs"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return flk.ParsePCS(v.PCS)
}

func run(stdin io.Reader, stdout io.Writer, args []string) error {
	fs := flag.NewFlagSet("flk-conformance", flag.ContinueOnError)
	submit := fs.String("submit", "", "gateway URL: sign and submit every vector's PCS")
	tenant := fs.String("tenant", "default", "tenant id for --submit")
	hmacKey := fs.String("hmac-key", "", "HMAC secret for --submit")
	hmacMode := fs.String("hmac-mode", "digest", "HMAC mode for --submit: digest or payload")
	edSeed := fs.String("ed25519-seed", "", "sign with this Ed25519 seed (hex) for --submit")
	construction := fs.Bool("construction", false, "input in construction_vectors.json format (not implemented in Go)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *construction {
		return fmt.Errorf("--construction: the Go SDK does not build PCS from raw points")
	}
	data, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	var file vectorFile
	if err := json.Unmarshal(data, &file); err != nil {
		return fmt.Errorf("input: %w", err)
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := func(v any) error {
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		if err := e.Encode(v); err != nil {
			return err
		}
		_, err := out.Write(b.Bytes())
		return err
	}

	if *submit != "" {
		var signer flk.Signer
		switch {
		case *edSeed != "":
			signer, err = flk.NewEd25519SignerHex(*edSeed)
		case *hmacKey != "":
			signer, err = flk.NewHMACSigner([]byte(*hmacKey), flk.HMACMode(*hmacMode))
		default:
			return fmt.Errorf("--submit needs --hmac-key or --ed25519-seed")
		}
		if err != nil {
			return err
		}
		c := flk.NewClient(*submit)
		c.Tenant, c.Signer = *tenant, signer
		refused := 0
		for i, raw := range file.Vectors {
			p, err := pcsOf(raw)
			if err != nil {
				return fmt.Errorf("vector %d: %w", i, err)
			}
			r, err := c.Submit(context.Background(), p)
			if err != nil {
				return fmt.Errorf("vector %d: %w", i, err)
			}
			line := submitLine{PcsID: p.PcsID, HTTPStatus: r.HTTPStatus, Duplicate: r.Duplicate()}
			if o := r.Outcome(); o != "" {
				line.Outcome = &o
			}
			if !r.Acknowledged() {
				refused++
			}
			if err := enc(line); err != nil {
				return err
			}
			out.Flush()
		}
		if refused > 0 {
			return fmt.Errorf("%d of %d submissions were refused", refused, len(file.Vectors))
		}
		return nil
	}

	hmacSigner, _ := flk.NewHMACSigner([]byte(file.HMACKey), flk.ModeDigest)
	var ed *flk.Ed25519Signer
	if file.Ed25519Hex != "" {
		if ed, err = flk.NewEd25519SignerHex(file.Ed25519Hex); err != nil {
			return err
		}
	}
	b64 := base64.StdEncoding.EncodeToString
	for i, raw := range file.Vectors {
		p, err := pcsOf(raw)
		if err != nil {
			return fmt.Errorf("vector %d: %w", i, err)
		}
		payload, err := p.CanonicalPayload()
		if err != nil {
			return fmt.Errorf("vector %d: %w", i, err)
		}
		d := sha256.Sum256(payload)
		line := signingLine{
			PcsID:            p.ComputePcsID(),
			CanonicalPayload: string(payload),
			DigestHex:        hex.EncodeToString(d[:]),
			SigHMAC:          b64(hmacSigner.SignPayload(payload)),
		}
		if ed != nil {
			s := b64(ed.SignPayload(payload))
			line.SigEd25519 = &s
		}
		if err := enc(line); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if err := run(os.Stdin, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "flk-conformance:", err)
		os.Exit(1)
	}
}
