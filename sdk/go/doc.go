// Package flk is the Go SDK of FLK: it signs Proof-of-Computation Summaries (PCS) exactly as
// PROTOCOL.md section 2 prescribes (HMAC-SHA256 in digest and payload modes, Ed25519 over the
// digest), submits them to a gateway over REST with exponential backoff and full jitter that
// honours Retry-After, and keeps an fsync'd outbox for at-least-once delivery across crashes.
//
// Standard library only. Every signing vector of sdk/testdata drives the tests, and
// cmd/flk-conformance is the cross-SDK conformance runner.
package flk
