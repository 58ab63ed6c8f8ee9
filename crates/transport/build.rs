fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc unless the environment names one: building needs no
    // system protobuf compiler.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        set_protoc(&protoc);
    }
    println!("cargo:rerun-if-changed=../../proto/elastickv/v1/transport.proto");
    tonic_prost_build::configure().compile_protos(
        &["../../proto/elastickv/v1/transport.proto"],
        &["../../proto"],
    )?;
    Ok(())
}

#[allow(unsafe_code)]
fn set_protoc(path: &std::path::Path) {
    // SAFETY: the build script has no other threads reading the
    // environment at this point.
    unsafe { std::env::set_var("PROTOC", path) };
}
