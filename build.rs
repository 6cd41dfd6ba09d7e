//! Compiles `proto/editfeed/v1/*.proto` into Rust with protox, so that building the crate
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos: Vec<_> = std::fs::read_dir("proto/editfeed/v1")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed=proto/editfeed/v1");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let fds = protox::compile(&protos, ["proto"])?;
    // The descriptor set also feeds gRPC server reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("editfeed_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
