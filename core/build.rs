//! Records how this build was made, for the report's `tool_confidence` record: the git commit
//! (with `-dirty` when the tree has changes), the profile, the target and the compiler.

use std::process::Command;

fn main() {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = run("git", &["rev-parse", "HEAD"]).map(|c| {
        let dirty = run("git", &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        if dirty {
            format!("{c}-dirty")
        } else {
            c
        }
    });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    println!("cargo:rustc-env=HUDD_BUILD_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
    println!("cargo:rustc-env=HUDD_BUILD_RUSTC={}", run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into()));
    println!("cargo:rustc-env=HUDD_BUILD_PROFILE={}", std::env::var("PROFILE").unwrap_or_default());
    println!("cargo:rustc-env=HUDD_BUILD_TARGET={}", std::env::var("TARGET").unwrap_or_default());
    // A new commit or a change to the index (git add, commit) rebuilds the record; so does any
    // change in this package (cargo's default, kept by naming the source folder).
    if let Some(git) = run("git", &["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git}/HEAD");
        println!("cargo:rerun-if-changed={git}/index");
        if let Some(head) = run("git", &["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git}/{head}");
        }
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
}
