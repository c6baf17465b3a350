//! Links with esp-hal's linker script: esp-hal (and esp-rtos, esp-radio) put their
//! sections through it, and it includes the chip's memory map.
//! With the feature `defmt`, also with defmt's, which keeps the format strings in the
//! ELF (not in flash) for the host to decode.
fn main() {
    println!("cargo:rustc-link-arg=-Tlinkall.x");
    if std::env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
