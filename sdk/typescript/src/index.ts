// FLK agent SDK for Node and browsers: canonical PCS signing (PROTOCOL.md section 2) with
// WebCrypto, a REST client with full-jitter retries, and (Node, "@flk/sdk/outbox") an fsync'd
// outbox for at-least-once delivery.
export { canonicalPayload, jsonString, pyFloatRepr, round9, toJson, type SignedFields } from "./canonical.js";
export { fromBase64, fromHex, sha256, toBase64, toHex } from "./crypto.js";
export {
  canonical,
  Ed25519Signer,
  HmacSigner,
  pcsId,
  signPcs,
  verifyEd25519Strict,
  type Canonical,
  type HmacMode,
  type Signer,
} from "./sign.js";
export {
  answerClass,
  backoffDelay,
  Client,
  DEFAULT_RETRY,
  parseRetryAfter,
  type Answer,
  type AnswerClass,
  type ClientOptions,
  type RetryPolicy,
} from "./client.js";
export { rootFromInclusion, verifyInclusionBundle, type VerifiedInclusion } from "./audit.js";
