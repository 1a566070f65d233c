// Types of the hand-written glue (index.mjs) around flk-sdk's wasm signing core.

/** The fields of a PCS the signing core reads (PROTOCOL.md section 1). */
export interface PcsLike {
  pcs_id: string;
  merkle_root: string;
  shard_id: string;
  epoch: number;
  D_hat: number;
  coh_star: number;
  r: number;
  budget: number;
  sig?: string;
  [key: string]: unknown;
}

export type HmacMode = "digest" | "payload";

export declare class FlkWasm {
  static load(source?: Uint8Array | ArrayBuffer | URL | string): Promise<FlkWasm>;
  canonical(pcs: PcsLike): string;
  digest(): Uint8Array;
  pcsId(merkleRoot: string, epoch: number, shardId: string): string;
  useHmac(secret: string | Uint8Array, mode?: HmacMode): void;
  useEd25519Seed(seed: string | Uint8Array): Uint8Array;
  useEd25519Public(publicKey: string | Uint8Array): void;
  signCanonical(): Uint8Array;
  sign(pcs: PcsLike): string;
  verify(pcs: PcsLike): boolean;
  leafHash(entry: Uint8Array): Uint8Array;
}

export declare function toBase64(bytes: Uint8Array): string;
export declare function fromBase64(text: string): Uint8Array;
export declare function toHex(bytes: Uint8Array): string;
export declare function fromHex(hex: string): Uint8Array;
export declare function toJson(value: unknown): string;
export declare function submit(
  baseUrl: string,
  tenant: string,
  pcs: PcsLike | string,
): Promise<{ http_status: number; body: any; retry_after: string | null }>;
