//! Link settings for the `meshprobe` binary (its own targets only: the libraries and tests
//! are built as before).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    // Relative relocations packed (DT_RELR, glibc ≥ 2.36 — Debian 12, the image's base): the
    // position-independent binary carries ~17,000 of them, 400 kB of `.rela.dyn` that the
    // loader reads at every start and that then stays resident; packed, a few kB. The
    // binary needs glibc's `GLIBC_ABI_DT_RELR` version, so an older glibc refuses it at
    // start with a message naming it. `MESHPROBE_NO_RELR=1` builds without.
    println!("cargo:rerun-if-env-changed=MESHPROBE_NO_RELR");
    let off = std::env::var_os("MESHPROBE_NO_RELR").is_some_and(|v| v == "1");
    if target.ends_with("-linux-gnu") && !off {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
