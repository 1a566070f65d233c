//! Compiles `proto/` with protox (pure Rust: no system `protoc` needed) and generates the
//! prost messages and tonic client/server code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with `env!`: a target directory shared by clones at
    // other paths reuses this compiled script.
    let root = format!("{}/../proto", std::env::var("CARGO_MANIFEST_DIR")?);
    let files = [
        "flk/v1/verify.proto",
        "flk/v1/audit.proto",
        "flk/v1/kpi.proto",
        "flk/v1/tiering.proto",
        "flk/v1/compliance.proto",
        "flk/v1/replication.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={root}/{f}");
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        // Undecodable messages are INVALID_ARGUMENT, not tonic-prost's INTERNAL (src/codec.rs).
        .codec_path("crate::codec::FlkCodec")
        // A submission's JSON body as `Bytes`: the gateway forwards the REST body without a
        // copy, and a submission kept for a resend costs a reference count, not a copy.
        .bytes(".flk.v1.SubmitRequest.pcs_json")
        .compile_fds(fds)?;
    Ok(())
}
