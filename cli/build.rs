//! Embeds the git commit of the engine being built as `ETRADING_GIT_COMMIT`: `git rev-parse
//! HEAD`, with `-dirty` when tracked files differ from it, or `unknown` outside a git checkout
//! (or without git). Promotions record it.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = match git(&["rev-parse", "HEAD"]) {
        Some(head) if !head.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{head}-dirty") } else { head }
        }
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=ETRADING_GIT_COMMIT={commit}");
    // Run again when HEAD moves, the index changes (commits, checkouts, staged edits) or a
    // source of the workspace changes (the `-dirty` marker).
    for path in [
        "../Cargo.toml",
        "../Cargo.lock",
        "../cli/src",
        "../data/src",
        "../db/src",
        "../db/migrations",
        "../kernels/src",
        "../reports/src",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{reference}");
        }
    }
}
