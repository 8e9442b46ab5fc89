//! Embeds the built browser viewer (`target/viewer-dist/`, written by
//! `scripts/build-viewer.sh`: the wasm module and wasm-bindgen's JS glue) into the host build
//! of this crate, so that `etrading report` works from a release binary alone. Without a
//! built viewer (or when compiling the viewer itself for wasm32) `dist::EMBEDDED` is `None`.
//! `ETRADING_VIEWER_DIST` names another folder.

use std::path::PathBuf;

const FILES: [&str; 2] = ["etrading_viewer_bg.wasm", "etrading_viewer.js"];

fn main() {
    println!("cargo:rerun-if-env-changed=ETRADING_VIEWER_DIST");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dist = std::env::var_os("ETRADING_VIEWER_DIST")
        .map_or_else(|| manifest.join("../target/viewer-dist"), PathBuf::from);
    println!("cargo:rerun-if-changed={}", dist.display());
    for f in FILES {
        println!("cargo:rerun-if-changed={}", dist.join(f).display());
    }
    let wasm_target = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    let present = FILES.iter().all(|f| dist.join(f).is_file());
    let code = if present && !wasm_target {
        let abs = |f: &str| dist.join(f).canonicalize().unwrap().display().to_string();
        format!(
            "pub const EMBEDDED: Option<Viewer> = Some(Viewer {{ wasm: include_bytes!({:?}), js: include_str!({:?}) }});\n",
            abs(FILES[0]),
            abs(FILES[1])
        )
    } else {
        "pub const EMBEDDED: Option<Viewer> = None;\n".to_string()
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("dist.rs");
    std::fs::write(out, code).unwrap();
}
