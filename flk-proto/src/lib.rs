//! FLK contracts: the generated `flk.v1` types, their conversions to and from `flk-core`
//! domain types (validated once, here at the edge), the one error mapping shared by every
//! service and the gateway, and client facades.

pub mod audit;
pub mod codec;
pub mod convert;
pub mod error;
pub mod transport;

/// Generated `flk.v1` messages and services.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("flk.v1");
}

pub use error::{ApiError, ErrorKind};

/// Metadata header carrying the tenant on direct gRPC calls.
pub const TENANT_METADATA: &str = "x-tenant-id";
/// The tenant used when a request names none.
pub const DEFAULT_TENANT: &str = "default";
