//! Renders the camera frame served at `/frame.jpg`, so the repository holds no binary
//! image.
use std::{env, fs, path::PathBuf};

use jpeg_encoder::{ColorType, Encoder};

/// The frame a small camera module sends at VGA: 640x480.
const WIDTH: u16 = 640;
const HEIGHT: u16 = 480;
/// A real OV2640 VGA frame at good quality is 100-160 kB; the frame must be that size
/// because the symptoms the layers fix (one big send, slow readers, cancels) come
/// with big responses.
const SIZE_RANGE: core::ops::RangeInclusive<usize> = 100_000..=160_000;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");

    let (jpeg, dc_quant_offset) = render_frame();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("frame.jpg"), &jpeg).expect("write frame.jpg");
    fs::write(
        out.join("frame.rs"),
        format!(
            "/// Offset of the luminance DC quantiser in `frame.jpg`.\n\
             pub const DC_QUANT_OFFSET: usize = {dc_quant_offset};\n"
        ),
    )
    .expect("write frame.rs");
}

/// Encodes a test card at the highest quality whose file fits [`SIZE_RANGE`], and
/// finds the byte the firmware changes per frame.
fn render_frame() -> (Vec<u8>, usize) {
    let pixels = test_card();
    for quality in (60..=98).rev() {
        let mut jpeg = Vec::new();
        Encoder::new(&mut jpeg, quality)
            .encode(&pixels, WIDTH, HEIGHT, ColorType::Rgb)
            .expect("encode the test card");
        if SIZE_RANGE.contains(&jpeg.len()) {
            let offset = luma_dc_quant_offset(&jpeg);
            return (jpeg, offset);
        }
    }
    panic!("no quality puts the test card in {SIZE_RANGE:?} bytes");
}

/// Colour bars over a gradient, with sensor-like noise: noise is what makes a camera
/// frame big, smooth areas alone would compress to a few kB.
fn test_card() -> Vec<u8> {
    const BARS: [[u8; 3]; 8] = [
        [235, 235, 235],
        [235, 235, 16],
        [16, 235, 235],
        [16, 235, 16],
        [235, 16, 235],
        [235, 16, 16],
        [16, 16, 235],
        [16, 16, 16],
    ];
    let mut seed: u32 = 0x2545_f491;
    let mut noise = move || {
        // xorshift32: deterministic, so every build serves the same bytes.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed & 0x3f) as i16 - 32
    };
    let mut pixels = Vec::with_capacity(usize::from(WIDTH) * usize::from(HEIGHT) * 3);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let bar = BARS[usize::from(x) * BARS.len() / usize::from(WIDTH)];
            let shade = (i32::from(y) * 96 / i32::from(HEIGHT) - 48) as i16;
            for channel in bar {
                let value = i16::from(channel) + shade + noise();
                pixels.push(value.clamp(0, 255) as u8);
            }
        }
    }
    pixels
}

/// The offset of the first entry of quantisation table 0 (luminance), which scales
/// every block's mean brightness. Walks the marker segments up to the first DQT.
fn luma_dc_quant_offset(jpeg: &[u8]) -> usize {
    let mut at = 2; // after SOI
    while at + 4 <= jpeg.len() {
        assert_eq!(jpeg[at], 0xff, "marker expected at {at}");
        let marker = jpeg[at + 1];
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if marker == 0xdb {
            let precision_and_table = jpeg[at + 4];
            assert_eq!(precision_and_table, 0x00, "8-bit luminance table first");
            return at + 5;
        }
        at += 2 + length;
    }
    panic!("no DQT segment in the encoded frame");
}
