package flk

// The PCS record (PROTOCOL.md section 1) as a Go value.

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// FT is the optional fault-tolerance block of a PCS.
type FT struct {
	OutboxSeq   *int64   `json:"outbox_seq,omitempty"`
	Degraded    *bool    `json:"degraded,omitempty"`
	Fallbacks   []string `json:"fallbacks,omitempty"`
	ClockSkewMs *int64   `json:"clock_skew_ms,omitempty"`
}

// PCS is one Proof-of-Computation Summary.
type PCS struct {
	PcsID      string           `json:"pcs_id"`
	Schema     string           `json:"schema"`
	Version    string           `json:"version"`
	ShardID    string           `json:"shard_id"`
	Epoch      int64            `json:"epoch"`
	Attempt    int64            `json:"attempt"`
	SentAt     string           `json:"sent_at"`
	Seed       json.Number      `json:"seed"`
	Scales     []int64          `json:"scales"`
	NJ         map[string]int64 `json:"N_j"`
	CohStar    float64          `json:"coh_star"`
	VStar      []float64        `json:"v_star"`
	DHat       float64          `json:"D_hat"`
	R          float64          `json:"r"`
	Regime     string           `json:"regime"`
	Budget     float64          `json:"budget"`
	MerkleRoot string           `json:"merkle_root"`
	Sig        string           `json:"sig,omitempty"`
	FT         *FT              `json:"ft,omitempty"`
}

// ParsePCS decodes one PCS document (numbers kept exact: an epoch with a fraction is refused).
func ParsePCS(data []byte) (*PCS, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var p PCS
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("pcs: %w", err)
	}
	return &p, nil
}

// Signed returns the 8 values the signature covers.
func (p *PCS) Signed() SignedFields {
	return SignedFields{
		PcsID: p.PcsID, MerkleRoot: p.MerkleRoot, Epoch: p.Epoch, ShardID: p.ShardID,
		DHat: p.DHat, CohStar: p.CohStar, R: p.R, Budget: p.Budget,
	}
}

// CanonicalPayload returns the bytes that are hashed and signed for p.
func (p *PCS) CanonicalPayload() ([]byte, error) { return CanonicalPayload(p.Signed()) }

// ComputePcsID recomputes the id from merkle_root, epoch and shard_id.
func (p *PCS) ComputePcsID() string { return PcsID(p.MerkleRoot, p.Epoch, p.ShardID) }

// Marshal encodes p as a request body.
func (p *PCS) Marshal() ([]byte, error) { return json.Marshal(p) }
