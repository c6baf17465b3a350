//! Synthetic camera frames: valid baseline JPEGs of 100-160 kB, made at start-up so no
//! binary blob lives in the repository. A textured scene (gradients plus seeded
//! grain, like a real sensor) keeps the size in the range of a 640x480 ESP32-CAM frame;
//! a bar moves from frame to frame so a viewer sees the stream advance.

/// `count` frames, each a complete JPEG file.
pub fn frames(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(frame).collect()
}

fn frame(index: usize) -> Vec<u8> {
    const W: u16 = 640;
    const H: u16 = 480;
    let mut rgb = Vec::with_capacity(W as usize * H as usize * 3);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ index as u64;
    let bar = (index * 80) % W as usize;
    for y in 0..H as usize {
        for x in 0..W as usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let grain = (seed & 0x3f) as i32 - 32;
            let in_bar = x >= bar && x < bar + 40;
            let base = [
                (x * 255 / W as usize) as i32,
                (y * 255 / H as usize) as i32,
                if in_bar {
                    250
                } else {
                    96 + ((x ^ y) & 0x3f) as i32
                },
            ];
            for c in base {
                rgb.push((c + grain).clamp(0, 255) as u8);
            }
        }
    }
    let mut out = Vec::with_capacity(160 * 1024);
    jpeg_encoder::Encoder::new(&mut out, 80)
        .encode(&rgb, W, H, jpeg_encoder::ColorType::Rgb)
        .expect("encoding an in-memory image cannot fail");
    out
}
