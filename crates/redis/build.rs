fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=csrc/longdouble.c");
    cc::Build::new()
        .file("csrc/longdouble.c")
        .warnings(true)
        .compile("elastickv_longdouble");

    // The raft log's entries. A vendored protoc unless the environment
    // names one: building needs no system protobuf compiler.
    println!("cargo:rerun-if-changed=../../proto/elastickv/v1/log.proto");
    let mut config = prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    config
        .bytes(["."])
        .compile_protos(&["../../proto/elastickv/v1/log.proto"], &["../../proto"])?;
    Ok(())
}
