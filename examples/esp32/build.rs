//! Links with esp-hal's linker script: esp-hal (and esp-rtos, esp-radio) put their
//! sections through it, and it includes the chip's memory map.
fn main() {
    println!("cargo:rustc-link-arg=-Tlinkall.x");
    println!("cargo:rerun-if-changed=build.rs");
}
