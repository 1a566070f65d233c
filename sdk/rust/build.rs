//! With feature `client`: compiles `proto/flk/v1/verify.proto` (a copy of the server's
//! contract, shipped in the package) with protox, pure Rust and no system `protoc`, into the
//! prost messages and the tonic client. Without it (the `no_std` core, the wasm build) there is
//! nothing to generate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "client")]
    {
        // Read at run time, not baked in with `env!`: a target directory shared by clones at
        // other paths reuses this compiled script.
        let root = format!("{}/proto", std::env::var("CARGO_MANIFEST_DIR")?);
        let files = ["flk/v1/verify.proto"];
        for f in files {
            println!("cargo:rerun-if-changed={root}/{f}");
        }
        let fds = protox::compile(files, [&root])?;
        tonic_prost_build::configure()
            .build_server(false)
            .bytes(".flk.v1.SubmitRequest.pcs_json")
            .compile_fds(fds)?;
    }
    Ok(())
}
